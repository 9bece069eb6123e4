"""`scripts/demo` (`calsync demo`): the whole chain on this machine, in one command.

1. Starts the Google Calendar stand-in (HTTP) and the EWS stand-in (HTTPS, with a CA it
   generates), each as `calsync emulate ...`, on 127.0.0.1 ports the system picks.
2. Writes a calsync.toml and starts `mitmdump -s addon/calsync.py` with it, in its own
   confdir (so it makes a fresh mitmproxy CA), trusting the EWS stand-in's CA upstream and
   running the two-way job every `calsync_sync_interval` seconds.
3. Plays a mail client: exchangelib THROUGH the proxy over HTTPS (trusting the mitmproxy
   CA, as a client with it installed would), creating, editing and deleting events and a
   weekly series with one modified occurrence; then plays someone editing in Google
   Calendar (google-api-python-client) and waits for the edit to reach Exchange.
4. Prints both calendars side by side, in the user's time zone, with the latency of each
   change; then what calsync's own /metrics says of the run (the addon's [admin] server,
   read-only, on a port the system picks), parsed with prometheus_client's parser; and
   stops everything it started (also on Ctrl-C or failure).

Every wait is bounded; exit status 0 only when both calendars converged. An occurrence
edit re-reads the series and carries its exception to Google as an instance override: the
table shows what Google really has for that occurrence.

The password, OAuth client secret and tokens exist only in the temporary directory (0600
token file) and in the environment of the processes started here; nothing prints them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

T = TypeVar("T")

USER = "alice@example.com"
#: The variable mitmdump reads the EWS password from; set it to choose the password.
PASSWORD_ENV = "CALSYNC_DEMO_EWS_PASSWORD"  # noqa: S105 - a variable name, not a secret
ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon" / "calsync.py"
BIN = Path(sys.executable).parent
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

#: Bounded waits, in seconds.
START_TIMEOUT = 30.0
MIRROR_TIMEOUT = 15.0  # Exchange response -> visible in Google (the proxy's fast path)
SYNC_TIMEOUT = 20.0  # Google edit -> visible in Exchange (the periodic two-way job)
SETTLE_TIMEOUT = 5.0  # both sides agree -> the last run's end counted in /metrics
WARM_TIMEOUT = 30.0  # the worker process warm, at most

#: what the addon's admin server logs once it listens (sync/ops/admin/server.py)
ADMIN_LISTENING = r"admin: .* the console on (http://127\.0\.0\.1:\d+)"
#: the demo's scrape of its own /metrics, kept in the work dir
METRICS_FILE = "metrics.txt"


class DemoFailed(Exception):
    """Something did not start or did not converge in time: said in one line."""


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without proxy settings (loopback never proxied), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _PROXY_VARIABLES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


class Child:
    """A process started by the demo; its output goes to a log file in the work dir."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log_path = workdir / f"{name}.log"
        self.env = dict(env)
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        # An interrupt inside Popen would lose the process it forked: hold it until
        # `self.process` is set, so the clean-up can stop it.
        with _INTERRUPTS.held(), self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                self.argv,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops us in order
            )
        return self

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            match = regex.search(text)
            if match:
                return match
            if self.process is None or self.process.poll() is not None:
                break
            time.sleep(0.05)
        tail = "\n".join(self.log().splitlines()[-15:])
        raise DemoFailed(f"{self.name} did not start (see {self.log_path}):\n{tail}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM (mitmdump then lets its addon finish), SIGKILL after 10 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class Latency:
    change: str
    direction: str  # "Exchange -> Google" or "Google -> Exchange"
    seconds: float | None  # None: did not converge in time
    note: str = ""


@dataclass
class Run:
    workdir: Path
    zone: ZoneInfo
    interval: int
    password: str
    admin_url: str = ""  # the read-only admin console; /metrics, /healthz, /readyz under it
    children: list[Child] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def wait_until(check: Callable[[], T | None], timeout: float, poll: float = 0.01) -> T | None:
    """`check()` until it returns something other than None, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None or time.monotonic() >= deadline:
            return value
        time.sleep(poll)


# --- set-up -------------------------------------------------------------------------------


def start_stand_ins(run: Run) -> tuple[str, str, Path]:
    """(Google base URL, EWS URL, EWS CA path), both stand-ins running."""
    calsync = [sys.executable, "-m", "sync.cli", "emulate"]
    env = clean_env()
    google = Child("google-stand-in", [*calsync, "google", "--user", USER], run.workdir, env)
    ews = Child(
        "ews-stand-in",
        [
            *calsync,
            "ews",
            "--tls-dir",
            str(run.workdir / "ews-tls"),
            "--user",
            f"{USER}:{run.password}",
        ],
        run.workdir,
        env,
    )
    # listed before they start: an interrupt in between must still stop them
    run.children += [google, ews]
    google.start()
    ews.start()  # both start at once
    google_url = google.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
    ca = Path(ews.wait_for(r"CA certificate: (\S+)").group(1))
    ews_url = ews.wait_for(r"listening on (https://127\.0\.0\.1:\d+\S*)").group(1)
    return google_url, ews_url, ca


def write_config(run: Run, google_url: str, ews_url: str, ca: Path) -> Path:
    """calsync.toml and the user's Google token file (0600, no access token yet: the
    addon's first call refreshes it, as after `calsync auth google`)."""
    from sync.backends.google import SCOPES

    tokens = run.workdir / "tokens"
    tokens.mkdir(mode=0o700, exist_ok=True)
    token_path = tokens / f"{USER}.json"
    fd = os.open(token_path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {
                "refresh_token": f"refresh-{USER}",  # the stand-in's refresh token
                "client_id": "calsync-demo.apps.googleusercontent.com",
                "client_secret": secrets.token_urlsafe(18),
                "token_uri": f"{google_url}/token",
                "scopes": SCOPES,
            },
            handle,
        )
    path = run.workdir / "calsync.toml"
    path.write_text(
        "\n".join(
            [
                "# written by scripts/demo",
                "[store]",
                'path = "calsync.db"',
                "[google]",
                f'api_endpoint = "{google_url}/calendar/v3/"',
                f'token_uri = "{google_url}/token"',
                "[exchange]",
                f'ews_url = "{ews_url}"',
                f'ca_file = "{ca}"',
                "[outbox]",
                "backoff_base_s = 0.2",
                "backoff_max_s = 2",
                "[[users]]",
                f'mailbox = "{USER}"',
                f'google_token_file = "tokens/{USER}.json"',
                f'exchange_password_env = "{PASSWORD_ENV}"',
                # read-only (no password_hash): ids, counts and times, never an event's text;
                # per-user series, as there is one user
                "[admin]",
                'listen_host = "127.0.0.1"',
                "listen_port = 0",
                "per_user_metrics = true",
                "",
            ]
        )
    )
    return path


def start_proxy(run: Run, config: Path, ews_ca: Path) -> tuple[str, Path]:
    """(proxy URL, the mitmproxy CA clients must trust); `run.admin_url` set."""
    confdir = run.workdir / "mitmproxy"
    options = {
        "confdir": str(confdir),
        "calsync_config": str(config),
        "ssl_verify_upstream_trusted_ca": str(ews_ca),
        "calsync_sync_interval": str(run.interval),
        "flow_detail": "0",
    }
    argv = [str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "--listen-port", "0"]
    argv += ["-s", str(ADDON)]
    for key, value in options.items():
        argv += ["--set", f"{key}={value}"]
    proxy = Child("mitmdump", argv, run.workdir, clean_env({PASSWORD_ENV: run.password}))
    run.children.append(proxy)
    proxy.start()
    match = proxy.wait_for(r"proxy listening at (127\.0\.0\.1:\d+)|error in script")
    if match.group(1) is None:
        raise DemoFailed(f"mitmdump could not load the addon (see {proxy.log_path})")
    # the addon starts its admin server as it loads, before the proxy listens
    try:
        admin = proxy.wait_for(f"{ADMIN_LISTENING}|admin: cannot listen", timeout=5)
    except DemoFailed:
        admin = None
    if admin is None or admin.group(1) is None:
        raise DemoFailed(f"the addon serves no admin console (see {proxy.log_path})")
    run.admin_url = admin.group(1)
    # the worker process warm (spawned, imports done, token refreshed) before the mail
    # client's first change, as in a proxy that has been running: the latencies shown are
    # then the proxy's, not the spawn's (a change made before is carried by the first run)
    with contextlib.suppress(DemoFailed):  # a slow machine: the first change waits
        proxy.wait_for(r"calsync worker: warm in", timeout=WARM_TIMEOUT)
    return f"http://{match.group(1)}", confdir / "mitmproxy-ca-cert.pem"


# --- the two clients ----------------------------------------------------------------------


def exchange_account(run: Run, ews_url: str, proxy_url: str, proxy_ca: Path) -> Any:
    """exchangelib as a mail client behind the proxy: HTTPS tunnelled through CONNECT,
    verified against the mitmproxy CA (what the client would have installed)."""
    import requests.adapters
    from exchangelib import BASIC, DELEGATE, Account, Configuration, Credentials
    from exchangelib.protocol import BaseProtocol, FailFast
    from exchangelib.version import EXCHANGE_2016, Version

    class ThroughProxy(requests.adapters.HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs["proxies"] = {"http": proxy_url, "https": proxy_url}
            kwargs["verify"] = str(proxy_ca)
            return super().send(request, **kwargs)

    # exchangelib's documented hook for transport settings
    BaseProtocol.HTTP_ADAPTER_CLS = ThroughProxy
    config = Configuration(
        service_endpoint=ews_url,
        credentials=Credentials(USER, run.password),
        auth_type=BASIC,
        version=Version(build=EXCHANGE_2016),
        retry_policy=FailFast(),
    )
    from exchangelib import EWSTimeZone

    return Account(
        primary_smtp_address=USER,
        config=config,
        autodiscover=False,
        access_type=DELEGATE,
        default_timezone=EWSTimeZone(run.zone.key),
    )


def google_service(google_url: str) -> Any:
    """google-api-python-client as the user's Google Calendar (its own OAuth refresh)."""
    import google_auth_httplib2
    import httplib2
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build

    from sync.backends.google import SCOPES

    creds = Credentials(
        token=None,
        refresh_token=f"refresh-{USER}",
        token_uri=f"{google_url}/token",
        client_id="calsync-demo.apps.googleusercontent.com",
        client_secret=secrets.token_urlsafe(18),
        scopes=SCOPES,
    )
    http = google_auth_httplib2.AuthorizedHttp(
        creds, http=httplib2.Http(timeout=10, proxy_info=None)
    )
    return build(
        "calendar",
        "v3",
        http=http,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": f"{google_url}/calendar/v3/"},
    )


def google_event(service: Any, event_id: str) -> dict[str, Any] | None:
    from googleapiclient.errors import HttpError

    try:
        return dict(service.events().get(calendarId="primary", eventId=event_id).execute())
    except HttpError as exc:
        if exc.resp.status in (404, 410):
            return None
        raise


def google_start(event: Mapping[str, Any], key: str = "start") -> dt.datetime | None:
    value = (event.get(key) or {}).get("dateTime")
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def outbox_pending(store: Path) -> int:
    """Outbox entries not yet written to Google (read-only: WAL lets us in beside mitmdump)."""
    from sync.state.sqlite import outbox_size

    return outbox_size(store)


# --- the story ----------------------------------------------------------------------------


def play(run: Run, account: Any, service: Any, store: Path) -> dict[str, Any]:
    """The changes, each timed from Exchange's response (or Google's) to its arrival on
    the other side. Returns what the table needs to know about the series."""
    from exchangelib import CalendarItem, EWSDateTime
    from exchangelib.fields import MONDAY
    from exchangelib.items import SEND_TO_NONE
    from exchangelib.recurrence import Recurrence, WeeklyPattern

    from mapping.event import event_id_for

    zone = account.default_timezone
    today = dt.datetime.now(run.zone).date()

    def at(day: dt.date, hour: int, minute: int = 0) -> Any:
        return EWSDateTime(day.year, day.month, day.day, hour, minute, tzinfo=zone)

    def mirrored(
        change: str, item_id: str, check: Callable[[dict[str, Any] | None], bool], since: float
    ) -> None:
        event_id = event_id_for(item_id)
        found = wait_until(
            lambda: True if check(google_event(service, event_id)) else None, MIRROR_TIMEOUT
        )
        seconds = time.monotonic() - since if found else None
        run.latencies.append(Latency(change, "Exchange -> Google", seconds))
        if not found:
            run.failures.append(f"{change}: not in Google after {MIRROR_TIMEOUT:.0f} s")

    def same(summary: str, start: Any) -> Callable[[dict[str, Any] | None], bool]:
        return lambda e: (
            e is not None
            and e.get("status") != "cancelled"
            and e.get("summary") == summary
            and google_start(e) == start
        )

    tomorrow = today + dt.timedelta(days=1)
    review = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Design review",
        start=at(tomorrow, 10),
        end=at(tomorrow, 11),
        location="Room 1",
    )
    review.save(send_meeting_invitations=SEND_TO_NONE)
    mirrored(
        "create 'Design review'", review.id, same("Design review", review.start), time.monotonic()
    )

    review.subject = "Design review (moved)"
    review.start, review.end = at(tomorrow, 14), at(tomorrow, 15)
    review.save(update_fields=["subject", "start", "end"])
    mirrored(
        "edit: rename, move to 14:00",
        review.id,
        same("Design review (moved)", review.start),
        time.monotonic(),
    )

    monday = today + dt.timedelta(days=(7 - today.weekday()) % 7 or 7)
    series = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Team sync",
        start=at(monday, 9),
        end=at(monday, 9, 30),
        recurrence=Recurrence(
            pattern=WeeklyPattern(interval=1, weekdays=[MONDAY]), start=monday, number=6
        ),
    )
    series.save(send_meeting_invitations=SEND_TO_NONE)
    mirrored(
        "create weekly series 'Team sync' (6x)",
        series.id,
        lambda e: bool(same("Team sync", series.start)(e) and e and e.get("recurrence")),
        time.monotonic(),
    )

    # One occurrence moved and renamed: an exception in Exchange. The addon refreshes the
    # series master; the exception itself is not carried to Google yet.
    index = 3
    occurrence = series.occurrence(index=index)
    occurrence.refresh()
    original_start = occurrence.start
    occurrence.subject = "Team sync (with guests)"
    occurrence.start = original_start + dt.timedelta(hours=2)
    occurrence.end = occurrence.start + dt.timedelta(minutes=45)
    occurrence.save(update_fields=["subject", "start", "end"])
    since = time.monotonic()
    # Visible = the refresh it queued has been written (Google's series is re-read
    # from Exchange); nothing new shows in Google for the occurrence itself.
    time.sleep(0.05)
    drained = wait_until(lambda: True if outbox_pending(store) == 0 else None, MIRROR_TIMEOUT)
    run.latencies.append(
        Latency(
            f"edit occurrence #{index} of 'Team sync'",
            "Exchange -> Google",
            time.monotonic() - since if drained else None,
            "the series re-read; the exception as an instance override",
        )
    )
    if not drained:
        run.failures.append("the occurrence edit's master refresh did not finish in time")

    lunch = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Lunch with Sam",
        start=at(tomorrow, 12),
        end=at(tomorrow, 13),
    )
    lunch.save(send_meeting_invitations=SEND_TO_NONE)
    mirrored(
        "create 'Lunch with Sam'", lunch.id, same("Lunch with Sam", lunch.start), time.monotonic()
    )
    lunch_id = lunch.id
    lunch.delete()
    mirrored(
        "delete 'Lunch with Sam'",
        lunch_id,
        lambda e: e is None or e.get("status") == "cancelled",
        time.monotonic(),
    )

    # Someone edits the review in Google Calendar; the two-way job brings it to Exchange.
    new_subject, new_location = "Design review (agenda in doc)", "Room 4.12"
    service.events().patch(
        calendarId="primary",
        eventId=event_id_for(review.id),
        body={"summary": new_subject, "location": new_location},
        sendUpdates="none",
    ).execute()
    since = time.monotonic()

    def in_exchange() -> bool | None:
        (item,) = account.fetch(ids=[(review.id, None)], only_fields=["subject", "location"])
        ok = getattr(item, "subject", None) == new_subject and item.location == new_location
        return True if ok else None

    arrived = wait_until(in_exchange, SYNC_TIMEOUT, poll=0.05)
    run.latencies.append(
        Latency(
            "edit 'Design review' in Google (title, room)",
            "Google -> Exchange",
            time.monotonic() - since if arrived else None,
            f"two-way job every {run.interval} s",
        )
    )
    if not arrived:
        run.failures.append(f"the Google edit did not reach Exchange in {SYNC_TIMEOUT:.0f} s")
    wait_until(lambda: True if outbox_pending(store) == 0 else None, MIRROR_TIMEOUT)
    return {"series_id": series.id, "index": index, "original_start": original_start}


# --- the report ---------------------------------------------------------------------------


def _when(start: dt.datetime | None, end: dt.datetime | None, zone: ZoneInfo) -> str:
    if start is None:
        return "?"
    s = start.astimezone(zone)
    text = s.strftime("%a %d %b %H:%M")
    if end is not None:
        text += "\u2013" + end.astimezone(zone).strftime("%H:%M")
    return text


def _weekly(item: Any) -> str:
    recurrence = getattr(item, "recurrence", None)
    if recurrence is None:
        return ""
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # EWS weekdays: 1 = Monday
    days = ", ".join(
        names[d - 1] if isinstance(d, int) and 1 <= d <= 7 else str(d)
        for d in getattr(recurrence.pattern, "weekdays", None) or []
    )
    times = getattr(recurrence.boundary, "number", None)
    return f"weekly on {days}" + (f", {times}x" if times else "")


def _rule(event: Mapping[str, Any]) -> str:
    rules = [r for r in event.get("recurrence") or [] if r.startswith("RRULE:")]
    return rules[0].removeprefix("RRULE:") if rules else ""


def compare(run: Run, account: Any, service: Any, series: dict[str, Any]) -> Any:
    """The side-by-side table; records in `run.failures` whatever differs."""
    from rich.table import Table

    from mapping.event import event_id_for

    zone = run.zone
    items = sorted(account.calendar.all(), key=lambda i: i.start)
    events = {
        e["id"]: e
        for e in service.events().list(calendarId="primary").execute().get("items", [])
        # an instance override belongs to its series' row (the exception row below)
        if e.get("status") != "cancelled" and not e.get("recurringEventId")
    }
    table = Table(title=f"{USER}: Exchange | Google  (times in {zone.key})", show_lines=True)
    table.add_column("Exchange", overflow="fold")
    table.add_column("Google", overflow="fold")
    table.add_column("", justify="center")
    for item in items:
        event = events.pop(event_id_for(item.id), None)
        left = f"{item.subject}\n{_when(item.start, item.end, zone)}"
        if item.location:
            left += f"\n@ {item.location}"
        if _weekly(item):
            left += f"\n{_weekly(item)}"
        if event is None:
            table.add_row(left, "(missing)", "✗")
            run.failures.append(f"{item.subject!r} is not in Google")
            continue
        when = _when(google_start(event), google_start(event, "end"), zone)
        right = f"{event.get('summary')}\n{when}"
        if event.get("location"):
            right += f"\n@ {event['location']}"
        if _rule(event):
            right += f"\n{_rule(event)}"
        ok = (
            event.get("summary") == item.subject
            and google_start(event) == item.start
            and google_start(event, "end") == item.end
            and (event.get("location") or None) == (item.location or None)
        )
        if not ok:
            run.failures.append(f"{item.subject!r} differs between Exchange and Google")
        table.add_row(left, right, "✓" if ok else "✗")
        if item.id == series["series_id"]:
            table.add_row(*_exception_row(account, service, item, event, series, zone))
    for event in events.values():
        table.add_row("(missing)", f"{event.get('summary')}", "✗")
        run.failures.append(f"{event.get('summary')!r} is only in Google")
    return table


def _exception_row(
    account: Any,
    service: Any,
    master: Any,
    event: Mapping[str, Any],
    series: dict[str, Any],
    zone: ZoneInfo,
) -> tuple[str, str, str]:
    """Exchange's modified occurrence next to what Google has at that occurrence."""
    occurrence = master.occurrence(index=series["index"])
    occurrence.refresh()
    left = (
        f"  ↳ occurrence #{series['index']} (exception)\n  {occurrence.subject}\n"
        f"  {_when(occurrence.start, occurrence.end, zone)}"
    )
    original = series["original_start"]
    # the instance is known by its original start: an override may have moved it
    instances = [
        i
        for i in service.events()
        .instances(calendarId="primary", eventId=event["id"])
        .execute()
        .get("items", [])
        if google_start(i, "originalStartTime") == original
    ]
    if not instances:
        return left, "  ↳ no instance at that time", "✗"
    instance = instances[0]
    carried = (
        instance.get("summary") == occurrence.subject
        and google_start(instance) == occurrence.start
        and google_start(instance, "end") == occurrence.end
    )
    right = (
        f"  ↳ {'the modified' if carried else 'the regular'} occurrence\n"
        f"  {instance.get('summary')}\n"
        f"  {_when(google_start(instance), google_start(instance, 'end'), zone)}"
    )
    return left, right, "✓" if carried else "not carried yet"


def latency_table(run: Run) -> Any:
    from rich.table import Table

    table = Table(title="Latency: response on one side -> visible on the other")
    table.add_column("change")
    table.add_column("direction")
    table.add_column("latency", justify="right")
    table.add_column("note")
    for latency in run.latencies:
        value = f"{latency.seconds * 1000:.0f} ms" if latency.seconds is not None else "timed out"
        table.add_row(latency.change, latency.direction, value, latency.note)
    return table


# --- its own /metrics ---------------------------------------------------------------------

Families = dict[str, Any]  # family name -> prometheus_client.Metric
_DIRECTIONS = {"exchange_to_google": "to Google", "google_to_exchange": "to Exchange"}


def _get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET on the loopback, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:  # /readyz answers 503 with its checks
        return exc.code, exc.read()


def parse_metrics(text: str) -> Families:
    from prometheus_client.parser import text_string_to_metric_families

    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(families: Families, name: str, suffix: str = "") -> Iterator[Any]:
    family = families.get(name)
    for sample in family.samples if family is not None else ():
        if sample.name == name + suffix:
            yield sample


def _total(families: Families, name: str, suffix: str = "", **labels: str) -> float:
    return float(
        sum(s.value for s in _samples(families, name, suffix) if labels.items() <= s.labels.items())
    )


def _settled(families: Families) -> bool:
    """Both sides' changes are counted and the outbox is empty: the scrape to show."""
    counted = {
        s.labels.get("direction")
        for s in _samples(families, "calsync_change_latency_seconds", "_count")
        if s.value > 0
    }
    return counted >= set(_DIRECTIONS) and _total(families, "calsync_outbox_depth") == 0


def own_metrics(run: Run) -> tuple[str, Families]:
    """The demo's scrape of its /metrics once both sides' changes are counted (a run is
    counted at its end, a moment after its write is visible), at most SETTLE_TIMEOUT s."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        try:
            status, body = _get(f"{run.admin_url}/metrics")
        except OSError as exc:
            raise DemoFailed(f"{run.admin_url}/metrics did not answer: {exc}") from None
        if status != 200:
            raise DemoFailed(f"{run.admin_url}/metrics answered {status}")
        text = body.decode()
        families = parse_metrics(text)
        if _settled(families) or time.monotonic() >= deadline:
            (run.workdir / METRICS_FILE).write_text(text)
            return text, families
        time.sleep(0.25)


def _seconds(value: float) -> str:
    return "+Inf" if value == float("inf") else f"{value:.3g} s"


def _median(buckets: Iterable[Any]) -> str:
    """The bucket a histogram's median falls in, from its cumulative `_bucket` samples:
    what the scrape knows without guessing inside a bucket."""
    ordered = sorted((float(s.labels["le"]), s.value) for s in buckets)
    total = ordered[-1][1] if ordered else 0
    for bound, count in ordered:
        if total and count >= total / 2:
            return f"median \u2264 {_seconds(bound)}"
    return "no median"


def _counts(pairs: Iterable[tuple[str, float]], empty: str = "none") -> str:
    """'a 3, b 1' (counts of 0 left out; the largest first), or `empty`."""
    ordered = sorted(((label, value) for label, value in pairs if value), key=lambda p: -p[1])
    return ", ".join(f"{label} {value:g}" for label, value in ordered) or empty


def _by(families: Families, name: str, label: str, suffix: str = "_total") -> str:
    return _counts((s.labels[label], s.value) for s in _samples(families, name, suffix))


def _latencies(families: Families) -> str:
    """A line for each source and direction that carried a change."""
    name = "calsync_change_latency_seconds"
    lines = []
    for count in _samples(families, name, "_count"):
        if count.value:
            key = (count.labels["source"], count.labels["direction"])
            buckets = [
                s
                for s in _samples(families, name, "_bucket")
                if (s.labels["source"], s.labels["direction"]) == key
            ]
            to = _DIRECTIONS.get(key[1], key[1])
            lines.append(f"{key[0]} {to}: {count.value:g}, {_median(buckets)}")
    return "\n".join(lines) or "none"


def _requests(families: Families, name: str) -> str:
    """A line for each status with its operations, the busiest first."""
    by_status: dict[str, dict[str, float]] = {}
    for s in _samples(families, name, "_total"):
        by_status.setdefault(s.labels["status"], {})[s.labels["operation"]] = s.value
    lines = [
        f"{status} {sum(ops.values()):g}: {_counts(ops.items())}"
        for status, ops in sorted(by_status.items(), key=lambda kv: -sum(kv[1].values()))
    ]
    return "\n".join(lines) or "none"


def metric_rows(families: Families) -> list[tuple[str, str]]:
    """(metric, what this run shows): every family the scrape has, in the README's order."""
    total = functools.partial(_total, families)
    connections = _by(families, "calsync_streaming_connections", "state", "")
    users = [
        (
            s.labels["user"],
            s.value,
            total("calsync_user_outbox_quarantined", user=s.labels["user"]),
            {
                a.labels["side"]: a.value
                for a in _samples(families, "calsync_user_last_sync_age_seconds")
                if a.labels["user"] == s.labels["user"]
            },
        )
        for s in _samples(families, "calsync_user_outbox_depth")
    ]
    rows = [
        ("calsync_change_latency_seconds", _latencies(families)),
        ("calsync_sync_runs_total", _by(families, "calsync_sync_runs", "outcome")),
        (
            "calsync_sync_run_duration_seconds",
            f"{total('calsync_sync_run_duration_seconds', '_count'):g} runs, "
            + _median(_samples(families, "calsync_sync_run_duration_seconds", "_bucket")),
        ),
        ("calsync_conflicts_total", _by(families, "calsync_conflicts", "winner")),
        ("calsync_google_requests_total", _requests(families, "calsync_google_requests")),
        ("calsync_ews_requests_total", _requests(families, "calsync_ews_requests")),
        ("calsync_outbox_entries_total", _by(families, "calsync_outbox_entries", "result")),
        ("calsync_notifications_total", _by(families, "calsync_notifications", "source")),
        (
            "calsync_notifications_held_total",
            _by(families, "calsync_notifications_held", "source"),
        ),
        ("calsync_outbox_depth", f"{total('calsync_outbox_depth'):g}"),
        ("calsync_outbox_oldest_age_seconds", _seconds(total("calsync_outbox_oldest_age_seconds"))),
        ("calsync_outbox_quarantined", f"{total('calsync_outbox_quarantined'):g}"),
        ("calsync_push_channels", f"{total('calsync_push_channels'):g}"),
        ("calsync_streaming_subscriptions", f"{total('calsync_streaming_subscriptions'):g}"),
        ("calsync_streaming_connections", connections),
        (
            "calsync_lease_holders",
            _counts(
                (
                    (s.labels["holder"], s.value)
                    for s in _samples(families, "calsync_lease_holders")
                ),
                "none (one node on SQLite: no leases)",
            ),
        ),
        ("calsync_users", f"{total('calsync_users'):g}"),
        ("calsync_users_paused", f"{total('calsync_users_paused'):g}"),
        ("calsync_store_up", f"{total('calsync_store_up'):g}"),
    ]
    if users:  # [admin] per_user_metrics
        rows += [
            ("calsync_user_outbox_depth", ", ".join(f"{u} {d:g}" for u, d, _, _ in users)),
            ("calsync_user_outbox_quarantined", ", ".join(f"{u} {q:g}" for u, _, q, _ in users)),
            (
                "calsync_user_last_sync_age_seconds",
                "\n".join(
                    f"{user}: "
                    + (", ".join(f"{side} {age:.1f} s" for side, age in sorted(ages.items())))
                    for user, _, _, ages in users
                ),
            ),
        ]
    return [
        (name, value if name.removesuffix("_total") in families else "(not in the scrape)")
        for name, value in rows
    ]


def readiness(run: Run) -> str:
    """/readyz in a few words: ready, or which checks failed."""
    try:
        status, body = _get(f"{run.admin_url}/readyz")
        checks = json.loads(body).get("checks", {})
    except (OSError, ValueError) as exc:
        return f"did not answer ({type(exc).__name__})"
    failing = sorted(name for name, check in checks.items() if not check.get("ok"))
    if status == 200 and not failing:
        return f"ready ({', '.join(sorted(checks))})"
    return f"not ready ({status}): {', '.join(failing)}"


def metrics_table(run: Run, families: Families) -> Any:
    from rich.table import Table

    table = Table(
        title=f"calsync's own {run.admin_url}/metrics, once both sides agreed",
        caption=f"/readyz: {readiness(run)}",
    )
    table.add_column("metric")
    table.add_column("value")
    for name, value in metric_rows(families):
        table.add_row(name, value)
    return table


# --- driver ---------------------------------------------------------------------------------


def _user_zone(name: str | None) -> ZoneInfo:
    if name:
        return ZoneInfo(name)
    try:
        import tzlocal

        return ZoneInfo(tzlocal.get_localzone_name() or "UTC")
    except (ImportError, ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class _Interrupts:
    """Ctrl-C, SIGTERM and SIGHUP end the demo through its clean-up (KeyboardInterrupt),
    except inside `held()`, where they wait for its end."""

    def __init__(self) -> None:
        self._holding = False
        self._pending = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self._holding:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, self.handler) for s in signals}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    @contextlib.contextmanager
    def held(self, *, drop: bool = False) -> Iterator[None]:
        """Hold interrupts; then raise one that came (or, with `drop`, forget it)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            pending, self._pending = self._pending, False
            if pending and not drop:
                raise KeyboardInterrupt


_INTERRUPTS = _Interrupts()


def demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    wide = None if sys.stdout.isatty() else 110
    out = Console(width=wide, highlight=False)
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 110, highlight=False)
    try:
        zone = _user_zone(args.zone)
    except (ZoneInfoNotFoundError, ValueError):
        err.print(f"calsync demo: unknown time zone {args.zone!r}")
        return 2
    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = Path(args.workdir).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="calsync-demo-")))
        workdir.chmod(0o700)
        password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(18)
        run = Run(workdir=workdir, zone=zone, interval=args.interval, password=password)
        started = time.monotonic()
        stack.enter_context(_INTERRUPTS.installed())
        try:
            err.print("calsync demo: starting the Google and EWS (TLS) stand-ins")
            google_url, ews_url, ews_ca = start_stand_ins(run)
            config = write_config(run, google_url, ews_url, ews_ca)
            err.print("calsync demo: starting mitmdump -s addon/calsync.py")
            proxy_url, proxy_ca = start_proxy(run, config, ews_ca)
            err.print(f"calsync demo: admin console (read-only) at {run.admin_url}/ while it runs")
            err.print(f"calsync demo: mail client -> {proxy_url} (HTTPS) -> {ews_url}")
            account = exchange_account(run, ews_url, proxy_url, proxy_ca)
            service = google_service(google_url)
            series = play(run, account, service, workdir / "calsync.db")
            out.print(compare(run, account, service, series))
            out.print(latency_table(run))
            account.protocol.close()
            _, families = own_metrics(run)
            out.print(metrics_table(run, families))
        except KeyboardInterrupt:
            err.print("calsync demo: interrupted; stopping what it started")
            return 130
        except DemoFailed as exc:
            err.print(f"calsync demo: {exc}")
            return 1
        except Exception as exc:  # the demo's own failure: one line, then clean up
            err.print(f"calsync demo: failed: {type(exc).__name__}: {exc}")
            return 1
        finally:
            with _INTERRUPTS.held(drop=True):  # a second Ctrl-C must not skip a stop
                for child in reversed(run.children):
                    child.stop()
        elapsed = time.monotonic() - started
        if run.failures:
            for failure in run.failures:
                err.print(f"calsync demo: did not converge: {failure}")
            err.print(f"calsync demo: logs in {workdir}" if args.workdir else "")
            return 1
        out.print(f"Both calendars agree ({elapsed:.1f} s, everything it started is stopped).")
        return 0
    return 1  # not reached


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole chain locally (stand-ins, mitmdump, both clients) and show it",
        description="Start both stand-ins and mitmdump with the addon, change a calendar "
        "through the proxy and in Google, and print both calendars side by side with the "
        "latencies. Exit status: 0 converged, 1 something did not, 2 bad arguments, "
        "130 interrupted.",
    )
    parser.add_argument("--zone", help="the user's time zone (default: this machine's)")
    parser.add_argument(
        "--interval", type=int, default=1, help="seconds between two-way job runs (default 1)"
    )
    parser.add_argument(
        "--workdir", help="keep config, logs and state here (default: a temporary directory)"
    )
    parser.set_defaults(run=demo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calsync")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return demo(parser.parse_args(["demo", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
