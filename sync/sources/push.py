"""Near real time from Google: `events.watch` channels, the webhook Google calls, and one
incremental sync of the user as soon as Google says their calendar changed.

Reference: https://developers.google.com/workspace/calendar/api/guides/push

- One channel per user (users whose direction carries Google changes to Exchange): `id` a
  UUID, `token` a per-channel secret that every notification must carry, `address` the
  configured `[push] webhook_url`. Channels are kept in the store (schema 3), so a restart
  reuses them; they are renewed `renew_before_s` before they expire (a new channel first,
  then `channels.stop` of the old one, so no change falls in between) and stopped on
  shutdown.
- The webhook answers `sync` (the channel's first message) with 200 and nothing else, and
  `exists` by queueing that user's incremental Google sync (`SyncJob.run_user`) on a thread,
  coalesced: at most one run in flight and one queued per user. A notification with an
  unknown channel, a wrong or missing token or another resource is refused (404/403) and
  logged by channel id, never with the token.
- Polling (`calsync_sync_interval`, `[sync] interval_s`) stays the safety net: Google does
  not promise delivery.

The webhook is a small stdlib HTTP server on a port of its own (`calsync serve`, or the
addon with `calsync_push_port`): Google calls it directly as an origin server, which a
mitmproxy listener in regular/upstream mode does not accept, and it must keep answering
whatever mode the proxy runs in. TLS (Google calls only public HTTPS addresses) is
terminated in front of it.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ews_parser.errors import CalsyncError
from sync.backends.base import ChannelRequest, GoogleBackend, GoogleError
from sync.backends.clients import Clients
from sync.config import Config, PushConfig, UserConfig
from sync.ops import metrics, pause
from sync.state.base import Fencing, Leases, Listening, StoreError, new_holder
from sync.store import Store, WatchChannel

log = logging.getLogger("calsync.push")

#: Where the webhook listens when [push] names no webhook_url (a local stand-in only).
DEFAULT_PATH = "/google/push"
#: How often renewals are looked for; channels last days, so a minute is plenty.
RENEW_CHECK_S = 60.0
#: how long a node's lease on a user lasts unrenewed (a dead node's users move on after it)
LEASE_S = 30.0
#: a trigger left to another node's lease is looked at again this long after that lease
#: was due to run out (a live holder has renewed it by then, a dead one's has lapsed)
FOLLOW_MARGIN_S = 0.5
#: Calendar channels last a week when the watch request asks for nothing shorter.
GOOGLE_DEFAULT_TTL_S = 7 * 24 * 3600.0


def _short(channel_id: str) -> str:
    return channel_id[:8]


# --- channels ----------------------------------------------------------------------------


class Channels:
    """Opens, renews and stops every user's channel; the store is the truth."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        address: str,
        settings: PushConfig,
        clock: Callable[[], float] = time.time,
        clients: Clients | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.address = address
        self.settings = settings
        self.clock = clock
        self.clients = clients or Clients(config)
        self._lock = threading.Lock()  # refresh and stop_all never interleave

    @property
    def users(self) -> list[UserConfig]:
        return [u for u in self.config.users if u.direction in ("both", "google-to-exchange")]

    def google(self, user: UserConfig) -> GoogleBackend:
        return self.clients.google(user)

    def refresh(self) -> list[WatchChannel]:
        """Make every user's channel current: reuse a stored one that is not due for
        renewal, else open a new one; then stop what it replaces. Returns those opened."""
        opened: list[WatchChannel] = []
        with self._lock:
            wanted = {u.mailbox for u in self.users}
            for channel in self.store.channels():
                if channel.mailbox not in wanted:  # user removed from the config
                    self._stop(channel)
            for user in self.users:
                try:
                    new = self._refresh_user(user)
                except CalsyncError as exc:
                    log.warning("%s: could not open a push channel: %s", user.mailbox, exc)
                    continue
                if new is not None:
                    opened.append(new)
        return opened

    def _refresh_user(self, user: UserConfig) -> WatchChannel | None:
        now = self.clock()
        stored = self.store.channels(user.mailbox)
        current = [
            c
            for c in stored
            if c.address == self.address
            and c.calendar_id == user.google_calendar
            and c.resource_id
            and c.expiration - now > self.settings.renew_before_s
        ]
        opened = None
        if current:
            keep = current[-1]
        else:
            opened = keep = self._open(user, now)
        for channel in stored:
            if channel.channel_id != keep.channel_id:
                self._stop(channel)
        return opened

    def _open(self, user: UserConfig, now: float) -> WatchChannel:
        ttl = self.settings.channel_ttl_s
        channel = WatchChannel(
            channel_id=str(uuid.uuid4()),
            mailbox=user.mailbox,
            resource_id="",  # known once Google answers
            token=secrets.token_urlsafe(32),
            address=self.address,
            calendar_id=user.google_calendar,
            expiration=now + (ttl or GOOGLE_DEFAULT_TTL_S),
            created_at=now,
        )
        body: ChannelRequest = {
            "id": channel.channel_id,
            "type": "web_hook",
            "address": self.address,
            "token": channel.token,
        }
        if ttl:
            body["expiration"] = str(int((now + ttl) * 1000))
        # Stored before the call: Google's first message (`sync`) can arrive before the
        # answer does, and must find its channel.
        self.store.save_channel(channel)
        try:
            answer = self.google(user).watch(body)
        except BaseException:
            self.store.forget_channel(channel.channel_id)
            raise
        expiration = channel.expiration
        if answer.get("expiration"):
            expiration = int(answer["expiration"]) / 1000
        channel = replace(
            channel, resource_id=str(answer.get("resourceId", "")), expiration=expiration
        )
        self.store.save_channel(channel)
        log.info(
            "%s: push channel %s open until %s",
            user.mailbox,
            _short(channel.channel_id),
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiration)),
        )
        return channel

    def _stop(self, channel: WatchChannel) -> None:
        """channels.stop, then forget it; kept for another try when Google could not be
        reached (a channel that lives on only causes a spare sync)."""
        if channel.resource_id and channel.expiration > self.clock():
            user = self.config.user_named(channel.mailbox)
            try:
                if user is None:
                    raise CalsyncError(f"{channel.mailbox} is no longer configured")
                self.google(user).stop_channel(channel.channel_id, channel.resource_id)
            except GoogleError as exc:
                if exc.retryable:
                    log.warning(
                        "%s: push channel %s not stopped (tried again later): %s",
                        channel.mailbox,
                        _short(channel.channel_id),
                        exc,
                    )
                    return
                if exc.status not in (404, 410):
                    log.warning(
                        "%s: push channel %s not stopped: %s",
                        channel.mailbox,
                        _short(channel.channel_id),
                        exc,
                    )
            except CalsyncError as exc:
                log.warning("push channel %s not stopped: %s", _short(channel.channel_id), exc)
            else:
                log.info("%s: push channel %s stopped", channel.mailbox, _short(channel.channel_id))
        self.store.forget_channel(channel.channel_id)

    def stop_all(self) -> None:
        with self._lock:
            for channel in self.store.channels():
                self._stop(channel)


# --- runs: one in flight and one queued per user --------------------------------------------


class Leasing:
    """One node's leases on the users it syncs, when several nodes share a store: a user's
    run happens only on the node holding that user's lease (sync/state `Leases`), which it
    keeps while it runs (renewed every third of `ttl`) and after, until it lapses unused.
    A node that dies or stalls loses its users `ttl` seconds later to the next node
    triggered for them."""

    def __init__(
        self,
        leases: Leases,
        *,
        holder: str | None = None,
        ttl: float = LEASE_S,
        clock: Callable[[], float] = time.time,
        fencing: Fencing | None = None,
    ) -> None:
        self.leases = leases
        #: the store's check of every write of a run against the lease it runs under
        self.fencing = fencing
        self.holder = holder or new_holder()
        self.ttl = ttl
        self.clock = clock
        #: the fence this node last took per user (a new one is logged: the user moved here)
        self._taken: dict[str, int] = {}

    @classmethod
    def for_store(cls, store: Store, *, ttl: float = LEASE_S) -> Leasing | None:
        """Leases where other nodes share the store (`ttl`: `[store] lease_s`); none for a
        store one node owns."""
        if not store.shared:
            return None
        fencing = store.state if isinstance(store.state, Fencing) else None
        return cls(store.state.leases, ttl=ttl, fencing=fencing)

    @contextlib.contextmanager
    def held(self, mailbox: str, *, keep: bool = True) -> Iterator[int | None]:
        """The lease's fencing number for the body's duration, or None (the body must then
        do nothing): another node holds the user. `keep=False`: given up after the body
        (a one-off `calsync sync`, not a node that goes on serving the user)."""
        fence = self.leases.acquire(mailbox, self.holder, self.ttl, now=self.clock())
        if fence is None:
            yield None
            return
        if self._taken.get(mailbox) != fence:  # the user's sync moves to this node
            log.info("lease on %s taken by %s: fence %d", mailbox, self.holder, fence)
            self._taken[mailbox] = fence
        # The history of a user's runs, node by node (read by tests/e2e/test_nodes.py)
        log.debug("lease on %s, fence %d: run began", mailbox, fence)
        done = threading.Event()
        lost = threading.Event()

        def renew() -> None:
            while not done.wait(self.ttl / 3):
                if not self.leases.renew(mailbox, self.holder, fence, self.ttl, now=self.clock()):
                    log.warning("lease on %s lost during a run (this node stalled)", mailbox)
                    lost.set()
                    return

        renewer = threading.Thread(target=renew, name="calsync-lease", daemon=True)
        renewer.start()
        try:
            if self.fencing is None:
                yield fence
            else:
                with self.fencing.fenced(mailbox, self.holder, fence):
                    yield fence
        finally:
            done.set()
            renewer.join()
            if not keep:
                self.leases.release(mailbox, self.holder, fence)
            elif not lost.is_set() and not self.leases.renew(
                mailbox, self.holder, fence, self.ttl, now=self.clock()
            ):
                lost.set()
            if lost.is_set():
                self._taken.pop(mailbox, None)
            log.debug(
                "lease on %s, fence %d: run ended%s",
                mailbox,
                fence,
                ", the lease lost" if lost.is_set() else "",
            )


class UserRuns:
    """Serialises the sync runs of each user (push and polling alike) and coalesces
    notification bursts: a trigger while a run is in flight queues at most one more.
    With `leasing` (a shared store), a user's run happens only on the node holding the
    user's lease; elsewhere the trigger is counted in `elsewhere` and followed: looked at
    once more when the holder's lease runs out unrenewed (a dead holder's users are run
    then, not at the next poll), else dropped."""

    def __init__(
        self, run: Callable[[UserConfig], Any], *, leasing: Leasing | None = None
    ) -> None:
        self._run = metrics.observed_runs(run)  # outcomes, durations, latencies (/metrics)
        self.leasing = leasing
        self.elsewhere: dict[str, int] = {}  # per mailbox, runs left to the lease holder
        self._guard = threading.Lock()
        self._user_locks: dict[str, threading.Lock] = {}
        self._in_flight: set[str] = set()
        self._queued: set[str] = set()
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self.runs: dict[str, int] = {}  # per mailbox, triggered runs finished
        self._following: dict[str, threading.Timer] = {}  # per mailbox, a look to come

    def run_now(self, user: UserConfig, *, follow: bool = False) -> Any:
        """Run the user's sync now, here, if this node holds (or takes) the user's lease.
        `follow`: a trigger that would be lost with a dead holder (a notification: the
        poll comes again anyway), looked at once more when the holder's lease runs out."""
        if pause.is_paused(user.mailbox):  # paused in the store (the console, any node): no run
            return None
        with self._guard:
            lock = self._user_locks.setdefault(user.mailbox, threading.Lock())
        with lock:
            if self.leasing is None:
                return self._run(user)
            with self.leasing.held(user.mailbox) as fence:
                if fence is None:
                    with self._guard:
                        self.elsewhere[user.mailbox] = self.elsewhere.get(user.mailbox, 0) + 1
                    if follow:
                        self._follow(user)
                    return None
                return self._run(user)

    def _follow(self, user: UserConfig) -> None:
        """Trigger the user again (not followed further) just after the holder's lease is
        due to run out: a live holder renews it and has run the change itself; a dead
        one's lapses, and this node takes the user then. Each trigger left to the holder
        sets the time anew: the lease as it is now (a holder that renewed it after an
        earlier trigger and died since must not have this node give up early)."""
        assert self.leasing is not None
        now = self.leasing.clock()
        lease = self.leasing.leases.holder(user.mailbox, now=now)
        wait = FOLLOW_MARGIN_S + (max(0.0, lease.expires_at - now) if lease else 0.0)
        timer = threading.Timer(wait, self._followed, args=(user,))
        timer.daemon = True
        with self._guard:
            if self._closed:
                return
            earlier = self._following.pop(user.mailbox, None)
            self._following[user.mailbox] = timer
        if earlier is not None:
            earlier.cancel()
        timer.start()

    def _followed(self, user: UserConfig) -> None:
        with self._guard:
            if self._following.get(user.mailbox) is not threading.current_thread():
                return  # set anew meanwhile (a cancelled timer can still fire)
            del self._following[user.mailbox]
        self.trigger(user, follow=False)

    def trigger(self, user: UserConfig, *, follow: bool = True) -> None:
        with self._guard:
            if self._closed:
                return
            if user.mailbox in self._in_flight:
                self._queued.add(user.mailbox)
                return
            self._in_flight.add(user.mailbox)
            thread = threading.Thread(
                target=self._loop, args=(user, follow), name="calsync-push-run", daemon=True
            )
            self._threads.add(thread)
        thread.start()

    def _loop(self, user: UserConfig, follow: bool) -> None:
        try:
            while True:
                try:
                    report = self.run_now(user, follow=follow)
                    summary = getattr(report, "summary", None)
                    if summary is not None and (report.actions or report.errors):
                        log.info("push: %s", summary())
                except Exception as exc:  # the next notification or poll tries again
                    log.error("push: sync run for %s failed: %s", user.mailbox, type(exc).__name__)
                with self._guard:
                    self.runs[user.mailbox] = self.runs.get(user.mailbox, 0) + 1
                    if user.mailbox in self._queued and not self._closed:
                        self._queued.discard(user.mailbox)
                        follow = True  # a trigger of its own came meanwhile
                        continue
                    self._in_flight.discard(user.mailbox)
                    return
        finally:
            with self._guard:
                self._threads.discard(threading.current_thread())

    def idle(self) -> bool:
        with self._guard:
            return not self._in_flight

    def busy(self, mailbox: str) -> bool:
        """Whether a run of the user's is in flight here (it may be writing)."""
        with self._guard:
            return mailbox in self._in_flight

    def close(self, timeout: float = 30.0) -> None:
        """No new runs; wait (at most `timeout`) for those in flight."""
        with self._guard:
            self._closed = True
            self._queued.clear()
            threads = list(self._threads)
            timers, self._following = list(self._following.values()), {}
        for timer in timers:
            timer.cancel()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


# --- the webhook -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    channel_id: str
    token: str | None
    resource_id: str | None
    resource_state: str
    message_number: str | None


def parse_notification(headers: Mapping[str, str]) -> Notification | None:
    """The X-Goog-* headers of a notification (names lower-cased); None without a
    channel id or a resource state."""
    channel_id = headers.get("x-goog-channel-id")
    state = headers.get("x-goog-resource-state")
    if not channel_id or not state:
        return None
    return Notification(
        channel_id=channel_id,
        token=headers.get("x-goog-channel-token"),
        resource_id=headers.get("x-goog-resource-id"),
        resource_state=state,
        message_number=headers.get("x-goog-message-number"),
    )


class Webhook:
    """Decides what a notification means: a status code, and maybe a sync of its user."""

    def __init__(self, config: Config, store: Store, on_change: Callable[[UserConfig], None]):
        self.config = config
        self.store = store
        self.on_change = metrics.noting("push", on_change)
        self.refused = 0

    def handle(self, method: str, headers: Mapping[str, str]) -> int:
        if method != "POST":
            return 405
        notification = parse_notification(headers)
        if notification is None:
            return 400
        channel = self.store.channel(notification.channel_id)
        if channel is None:
            log.info("notification on unknown channel %s refused", _short(notification.channel_id))
            self.refused += 1
            return 404
        if not notification.token or not hmac.compare_digest(
            notification.token.encode(), channel.token.encode()
        ):
            log.warning(
                "notification on channel %s refused: wrong or missing token",
                _short(channel.channel_id),
            )
            self.refused += 1
            return 403
        if channel.resource_id and notification.resource_id != channel.resource_id:
            log.warning(
                "notification on channel %s refused: another resource", _short(channel.channel_id)
            )
            self.refused += 1
            return 403
        if notification.resource_state == "sync":
            return 200
        user = self.config.user_named(channel.mailbox)
        if user is not None:
            log.debug(
                "%s: %s on channel %s",
                user.mailbox,
                notification.resource_state,
                _short(channel.channel_id),
            )
            self.on_change(user)
        return 200


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "calsync"
    sys_version = ""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 64 * 1024:
            self.rfile.read(length)  # notifications have no body
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status = self.server.webhook.handle(self.command, headers)
        except Exception as exc:  # Google retries 5xx with backoff
            log.error("webhook failed: %s", type(exc).__name__)
            status = 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.command, urlsplit(self.path).path)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    webhook: Webhook


class WebhookServer:
    def __init__(self, webhook: Webhook, host: str, port: int) -> None:
        self._httpd = _Server((host, port), _Handler)
        self._httpd.webhook = webhook
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{DEFAULT_PATH}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="calsync-webhook", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()


# --- the whole: what `calsync serve` and the addon run ---------------------------------------


class PushService:
    """Webhook server + channels + runs. `start()`, then `tick()` now and then (renewals),
    `stop()` at the end; all three block (network): run them off any event loop."""

    def __init__(
        self,
        config: Config,
        store: Store,
        run: Callable[[UserConfig], Any],
        *,
        port: int | None = None,
        runs: UserRuns | None = None,
        clock: Callable[[], float] = time.time,
        clients: Clients | None = None,
    ) -> None:
        self.settings = config.push or PushConfig()
        self.config = config
        self.runs = runs or UserRuns(
            run, leasing=Leasing.for_store(store, ttl=config.store_lease_s)
        )
        #: nodes sharing the store: a notification is passed on to the user's lease holder
        self.pokes = store.pokes if self.runs.leasing is not None else None
        self._listening: Listening | None = None
        self.webhook = Webhook(config, store, self._pushed)
        self.server = WebhookServer(
            self.webhook,
            self.settings.listen_host,
            self.settings.listen_port if port is None else port,
        )
        self.address = self.settings.webhook_url or self.server.url
        self.channels = Channels(
            config,
            store,
            address=self.address,
            settings=self.settings,
            clock=clock,
            clients=clients,
        )

    def _pushed(self, user: UserConfig) -> None:
        self.runs.trigger(user)
        if self.pokes is not None and self.runs.leasing is not None:
            # Google picked this node; the user's lease may be another's
            try:
                self.pokes.poke(user.mailbox, sender=self.runs.leasing.holder)
            except StoreError as exc:  # a hint: the holder's next poll carries the change
                log.warning("push: could not tell the other nodes: %s", exc)

    def _poked(self, mailbox: str, sender: str) -> None:
        if self.runs.leasing is not None and sender == self.runs.leasing.holder:
            return  # this node's own poke: it triggered the run already
        user = self.config.user_named(mailbox)
        if user is not None:
            self.runs.trigger(user)  # runs only where the lease is held (never re-poked)

    def start(self) -> None:
        if self.pokes is not None:
            self._listening = self.pokes.listen(self._poked)
        self.server.start()
        if self.settings.webhook_url is None:
            log.warning(
                "push: no [push] webhook_url: Google is given %s, which only a local "
                "stand-in can reach%s",
                self.address,
                (
                    "; nodes sharing a store each replace the others' channels: give them"
                    " the load balancer's address"
                    if self.runs.leasing is not None
                    else ""
                ),
            )
        self.channels.refresh()

    def tick(self) -> None:
        self.channels.refresh()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the channels and the webhook; wait at most `timeout` seconds for runs in
        flight (one cut short is redone from the stored state next time)."""
        try:
            if self.runs.leasing is None:
                self.channels.stop_all()
            # else the channels are every node's (one address, the load balancer's): the
            # other nodes go on using them and renew them
        finally:
            if self._listening is not None:
                self._listening.stop()
            self.server.stop()
            self.runs.close(timeout)
