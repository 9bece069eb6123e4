"""Three calsync nodes on one PostgreSQL (issue 15), deployed as README "Several nodes" says:
three `mitmdump -s addon/calsync.py` in reverse mode in front of the EWS stand-in (HTTPS),
each with a calsync.toml of its own naming the same `[store] url`, the same sealing key in
each one's environment, the same mitmproxy CA (mitmproxy-ca.pem) copied into each confdir.
Unmodified exchangelib clients of three users reach them through a load balancer: here
requests' transport adapter (exchangelib's documented hook), which sends each request to
the next node in rotation, trusting the one mitmproxy CA. The two-way job runs every second
on each node; leases are short (`[store] lease_s = 3`, so outbox claims last 6 s).

The burst: creates, updates and deletes, one change per user a round, the three users at
once; Google answers slowly meanwhile, so the outbox holds work when nodes stop. Mid-burst
the node holding the most leases dies (SIGKILL to mitmdump and its worker process, requests
in flight: the client cannot know what became of those), and comes back later; another,
holding a lease, is paused (SIGSTOP) in the middle of a run, past its lease and its claims,
then resumed (SIGCONT). A node out of rotation gets no new requests. Someone edits an event
in Google during the burst.

Afterwards (quiesce: the outbox empty, both sides agree):
- nothing lost, nothing duplicated: each user's Google calendar holds exactly the items
  Exchange has (read directly), one event each, with Exchange's fields; the Google edit is
  in Exchange;
- one node at a time synced each user: the nodes' lease lines (tests/e2e/lease_log.py: each
  two-way run's node, user, fence and times) show each fence held by one node, and two
  nodes' runs of a user overlapping only where the earlier one had lost its lease (its
  writes refused); the users of the killed and of the paused node were taken over;
- no invitation sent: every Google write carried sendUpdates=none, every Exchange write
  SendToNone (the stand-ins' records).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests.adapters
from cryptography.fernet import Fernet
from exchangelib import Account, CalendarItem
from exchangelib.protocol import BaseProtocol
from mitmproxy.certs import CertStore

from emulators.ews import EwsServer, start_server
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from tests.addon.conftest import token_file
from tests.e2e.clients import account, calendar_service, google_events, send_json, wait_for
from tests.e2e.conftest import password_env
from tests.e2e.items import at, create, expected_event, seen
from tests.e2e.processes import Mitmdump
from tests.e2e.steps import client_missing
from tests.sync.state.conftest import NOT_INSTALLED
from tests.sync.state.pg_server import PostgresServer, find_bindir

USERS = ("alice@example.com", "bob@example.com", "carol@example.com")
PASSWORD = "secret"
#: `[store] lease_s` of every node: a dead node's users move on after this, its claims after 2x
LEASE_S = 3
#: how long the paused node stays stopped at least: past its leases and its outbox claims
PAUSE_S = 2.5 * LEASE_S
#: how soon a stopped node's users are with another: its lease runs out, then the other
#: nodes' next poll of that user (each polls its users one after the other, every second,
#: and a run takes seconds while Google answers slowly: with one node killed and one
#: stopped, the last one runs all three users in turn; on a loaded 2-core CI machine that
#: took over 10 s past the lease)
TAKEOVER_S = LEASE_S + 20
#: Google's answers during the burst (the outbox has work when a node stops)
GOOGLE_LATENCY_MS = 300
LEASE_LOG = Path(__file__).with_name("lease_log.py")

MISSING = client_missing(None if find_bindir() else NOT_INSTALLED)


# --- the deployment ---------------------------------------------------------------------------


@pytest.fixture
def store_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, on a server of its own."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(MISSING or NOT_INSTALLED)
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server.url(server.create_database())
    finally:
        server.stop()


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[EwsServer]:
    server = start_server(users={u: PASSWORD for u in USERS}, tls_dir=tmp_path / "ews-tls")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def google() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(port=0, users=USERS) as server:
        yield server


def node_config(directory: Path, url: str, google: GoogleCalendarServer, ews: EwsServer) -> Path:
    """A node's calsync.toml: the shared store, short leases, the stand-ins. EWS streaming is
    off: the burst's changes come by the proxy and the job's feeds."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    lines = [
        "[store]",
        f'url = "{url}"',
        f"lease_s = {LEASE_S}",
        "[google]",
        f'api_endpoint = "{google.api_endpoint}"',
        f'token_uri = "{google.token_uri}"',
        "[exchange]",
        f'ews_url = "{ews.url}"',
        f'ca_file = "{ews.ca_path}"',
        "streaming = false",
        "[outbox]",
        "max_attempts = 200",
        "backoff_base_s = 0.1",
        "backoff_max_s = 0.4",
    ]
    for user in USERS:
        lines += [
            "[[users]]",
            f'mailbox = "{user}"',
            f'google_token_file = "{token_file(tokens, google, user)}"',
            f'exchange_password_env = "{password_env(user)}"',
        ]
    path = directory / "calsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Node(Mitmdump):
    """One calsync node: mitmdump with the addon (and lease_log.py), reverse proxy to
    Exchange. `crash`, `pause` and `resume` signal its whole process group (mitmdump and
    its worker process): the machine dies or stalls, not one process."""

    def __init__(self, index: int, workdir: Path, options: dict[str, str], env: dict[str, str]):
        super().__init__(
            workdir,
            options=options,
            env={**env, "CALSYNC_E2E_LEASE_LOG": str(workdir / "leases.log")},
            name=f"node{index}",
        )
        self.index = index
        #: mitmdump's process id of each run (the holder of its leases)
        self.pids: list[int] = []

    def command(self) -> list[str]:
        return [*super().command(), "-s", str(LEASE_LOG)]

    def start(self, timeout: float = 30.0) -> Node:
        super().start(timeout)
        assert self.process is not None
        self.pids.append(self.process.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def crash(self) -> None:
        os.killpg(self.pid, signal.SIGKILL)
        self.kill()  # reaps it

    def pause(self) -> None:
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)

    def lease_lines(self) -> str:
        path = self.workdir / "leases.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def nodes(
    tmp_path: Path,
    store_url: str,
    google: GoogleCalendarServer,
    exchange: EwsServer,
    request: pytest.FixtureRequest,
) -> Iterator[list[Node]]:
    # One mitmproxy CA for every node, as an administrator copies it (its key and
    # certificate, mitmproxy-ca.pem); each node makes the rest of its confdir from it.
    CertStore.from_store(tmp_path / "ca", "mitmproxy", 2048)
    env = {password_env(u): PASSWORD for u in USERS}
    env["CALSYNC_STORE_KEY"] = Fernet.generate_key().decode()
    made = []
    for index in range(3):
        workdir = tmp_path / f"node{index}"
        config = node_config(workdir, store_url, google, exchange)
        (workdir / "mitmproxy").mkdir()
        shutil.copy(tmp_path / "ca" / "mitmproxy-ca.pem", workdir / "mitmproxy")
        options = {
            "mode": f"reverse:{exchange.base_url}/",
            "calsync_config": str(config),
            "ssl_verify_upstream_trusted_ca": str(exchange.ca_path),
            "calsync_sync_interval": "1",
        }
        made.append(Node(index, workdir, options, env))
    try:
        # started together: the schema is made once (the others wait on its lock)
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(Node.start, made))
        yield made
    finally:
        for node in made:
            if node.process is not None:
                node.resume()  # a paused node cannot take SIGTERM
            node.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for node in made:
                # every calsync line, so that the cause is in CI's output
                print(node.logs(tail=40_000, without=_POOL_CHATTER))


#: psycopg's pool at debug: three lines a statement, which left only the last second of a
#: node's log in a failed run's output
_POOL_CHATTER = ("connection requested from", "connection given by", "returning connection to")


class Balancer:
    """The load balancer the clients' Exchange address leads to: each request goes to the
    next node in rotation, over TLS trusting the nodes' one CA. Requests to any other
    address (the checks' own reads, at https://localhost:PORT) go straight to Exchange."""

    def __init__(self, front: str, nodes_ca: Path, exchange_ca: Path) -> None:
        self.front = front  # host:port of the clients' Exchange address
        self.nodes_ca = nodes_ca
        self.exchange_ca = exchange_ca
        self.ports: dict[int, int] = {}  # node index -> its port, for the nodes in rotation
        self.sent: dict[int, int] = {}  # node index -> requests sent to it
        self.in_flight: dict[int, int] = {}  # node index -> requests not answered yet
        self._lock = threading.Lock()
        self._turn = itertools.count()

    def put(self, node: Node) -> None:
        assert node.port is not None
        with self._lock:
            self.ports[node.index] = node.port

    def take_out(self, node: Node) -> None:
        with self._lock:
            self.ports.pop(node.index, None)

    def pick(self) -> tuple[int, int]:
        """The next node in rotation: its index and port (its request now in flight)."""
        with self._lock:
            index = sorted(self.ports)[next(self._turn) % len(self.ports)]
            self.sent[index] = self.sent.get(index, 0) + 1
            self.in_flight[index] = self.in_flight.get(index, 0) + 1
            return index, self.ports[index]

    def answered(self, index: int) -> None:
        with self._lock:
            self.in_flight[index] -= 1

    def busy(self, node: Node) -> bool:
        with self._lock:
            return self.in_flight.get(node.index, 0) > 0

    def adapter(self) -> type[requests.adapters.HTTPAdapter]:
        balancer = self

        class Balanced(requests.adapters.HTTPAdapter):
            def __init__(self, **kwargs: Any) -> None:
                # exchangelib asks for one connection pool a session (one host); this
                # session's requests go to every node, one pool each
                super().__init__(**{**kwargs, "pool_connections": 8})

            def send(self, request: Any, **kwargs: Any) -> Any:
                kwargs["proxies"] = {}
                kwargs.pop("verify", None)
                parts = urlsplit(request.url)
                if parts.netloc != balancer.front:
                    return super().send(request, verify=str(balancer.exchange_ca), **kwargs)
                index, port = balancer.pick()
                request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))
                try:
                    return super().send(request, verify=str(balancer.nodes_ca), **kwargs)
                finally:
                    balancer.answered(index)

        return Balanced


# --- the users' clients and the burst -------------------------------------------------------


@dataclass
class Mailbox:
    """One user's mail client, exchangelib through the load balancer; its items by name.
    A change whose answer never came (a node killed with it in flight) leaves the client
    not knowing that item's state: it changes that item no more."""

    user: str
    account: Account
    items: dict[str, CalendarItem] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)  # name -> what failed

    def do(self, step: Step) -> None:
        if step.name in self.unknown or (step.name not in self.items and not step.creates):
            return
        try:
            step.change(self, step.name)
        except Exception as exc:  # the client's own request failed: see the docstring
            self.unknown[step.name] = f"{step.change.__name__}: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Step:
    name: str
    change: Callable[[Mailbox, str], None]
    creates: bool = False


def making(day: int, hour: int) -> Callable[[Mailbox, str], None]:
    def make(box: Mailbox, name: str) -> None:
        box.items[name] = create(box.account, name, at(day, hour), 30)

    return make


def renaming(subject: str) -> Callable[[Mailbox, str], None]:
    def rename(box: Mailbox, name: str) -> None:
        box.items[name].subject = subject
        box.items[name].save(update_fields=["subject"])

    return rename


def moving(day: int, hour: int) -> Callable[[Mailbox, str], None]:
    def move(box: Mailbox, name: str) -> None:
        item = box.items[name]
        item.start, item.end = at(day, hour), at(day, hour) + dt.timedelta(minutes=45)
        item.save(update_fields=["start", "end"])

    return move


def relocating(room: str) -> Callable[[Mailbox, str], None]:
    def relocate(box: Mailbox, name: str) -> None:
        box.items[name].location = room
        box.items[name].save(update_fields=["location"])

    return relocate


def delete(box: Mailbox, name: str) -> None:
    box.items[name].delete()
    del box.items[name]


#: one change per user a round; "Kept" is left to the Google edit
BURST = [
    Step("Alpha", making(2, 9), creates=True),
    Step("Bravo", making(2, 10), creates=True),
    Step("Charlie", making(2, 11), creates=True),
    Step("Delta", making(2, 12), creates=True),
    Step("Echo", making(2, 13), creates=True),  # 4: a node is killed with these in flight
    Step("Kept", making(2, 14), creates=True),
    Step("Alpha", renaming("Alpha, renamed")),
    Step("Bravo", moving(3, 10)),
    Step("Charlie", relocating("Room 2")),
    Step("Delta", delete),
    Step("Foxtrot", making(4, 9), creates=True),  # 10 to 13: another node is paused
    Step("Alpha", renaming("Alpha, renamed again")),
    Step("Echo", renaming("Echo, renamed")),
    Step("Bravo", delete),
    Step("Foxtrot", relocating("Room 3")),  # 14: the killed node is back
    Step("Golf", making(4, 11), creates=True),
    Step("Foxtrot", delete),
    Step("Charlie", moving(5, 11)),
    Step("Golf", renaming("Golf, renamed")),
    Step("Echo", delete),
]
KILL_AT, PAUSE_AT, RESTART_AT = 4, 10, 14


# --- reading the state from outside -----------------------------------------------------------


def outbox(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
    return {state: count for state, count in rows}


def lease_holders(url: str) -> dict[str, tuple[int, int]]:
    """Each user with a live lease: (the holder's process id, the fence)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT mailbox, holder, fence FROM leases WHERE expires_at > %s", [time.time()]
        ).fetchall()
    # a holder is "host/pid/random" (sync/sources/push.py Leasing)
    return {mailbox: (int(holder.split("/")[1]), fence) for mailbox, holder, fence in rows}


def holding(nodes: list[Node], url: str) -> list[tuple[int, Node]]:
    """(leases held, node) of the running nodes that hold any, most first."""
    counts: dict[int, int] = {}
    for pid, _ in lease_holders(url).values():
        counts[pid] = counts.get(pid, 0) + 1
    return sorted(
        ((counts[n.pid], n) for n in nodes if n.process is not None and n.pid in counts),
        key=lambda pair: -pair[0],
    )


def exchange_items(box: Account) -> dict[str, dict[str, Any]]:
    """The user's calendar as Exchange has it, in the terms `seen` reads Google's."""
    found = box.calendar.all().only("subject", "start", "end", "location")
    return {event_id_for(item.id): expected_event(item) for item in found}


#: the lines of sync/sources/push.py `Leasing`, as lease_log.py writes them
_LINE = re.compile(
    r"^(?P<at>\S+) (?P<pid>\d+) lease on (?P<user>\S+)(?: taken by \S+: fence \d+"
    r"| lost during a run \(this node stalled\)"
    r"|, fence (?P<fence>\d+): run (?P<what>began|ended)(?P<lost>, the lease lost)?)$"
)


@dataclass
class Run:
    pid: int
    user: str
    fence: int
    began: float
    ended: float = float("inf")  # still running when the lines were read
    lost: bool = False  # it ended having lost its lease (its writes refused from then)


def runs_of(nodes: list[Node], killed: dict[int, float]) -> list[Run]:
    """Every two-way run the nodes logged. A run cut by a SIGKILL ended then."""
    runs: list[Run] = []
    for node in nodes:
        open_runs: dict[tuple[int, str], Run] = {}
        for line in node.lease_lines().splitlines():
            match = _LINE.match(line)
            assert match, line
            pid, user = int(match["pid"]), match["user"]
            if match["what"] == "began":
                run = Run(pid, user, int(match["fence"]), float(match["at"]))
                open_runs[pid, user] = run
                runs.append(run)
            elif match["what"] == "ended":
                run = open_runs.pop((pid, user))
                assert run.fence == int(match["fence"]), line
                run.ended, run.lost = float(match["at"]), bool(match["lost"])
        for (pid, _), run in open_runs.items():
            if pid in killed:
                run.ended = killed[pid]
    return runs


def one_node_at_a_time(runs: list[Run], stalled: Outage) -> list[str]:
    """What breaks "a user is synced by one node at a time" (empty: nothing): a fence taken
    by two nodes, or two nodes' runs of a user overlapping, unless the earlier one is the
    stalled node's, stopped in that run, and ended knowing it had lost its lease (its
    writes refused from then). A lease passes only when its holder stops renewing it."""
    wrong = []
    fences: dict[tuple[str, int], set[int]] = {}
    for run in runs:
        fences.setdefault((run.user, run.fence), set()).add(run.pid)
    wrong += [f"{u} fence {f} held by {sorted(p)}" for (u, f), p in fences.items() if len(p) > 1]
    for user in USERS:
        mine = sorted((r for r in runs if r.user == user), key=lambda r: r.began)
        for first, later in itertools.combinations(mine, 2):
            if first.pid == later.pid or later.began >= first.ended:
                continue
            stalled_in_it = first.pid == stalled.pid and first.began <= stalled.at < first.ended
            if not (stalled_in_it and first.lost and first.fence < later.fence):
                wrong.append(f"{user}: {first} overlaps {later}")
    return wrong


def taken_over(runs: list[Run], user: str, pid: int, fence: int, since: float) -> float | None:
    """When another node first ran `user` under a later fence after `since`."""
    later = [r.began for r in runs if r.user == user and r.pid != pid and r.fence > fence]
    later = [t for t in later if t > since]
    return min(later) if later else None


# --- the test ---------------------------------------------------------------------------------


def test_three_nodes_lose_and_duplicate_nothing_through_a_kill_and_a_stall(
    nodes: list[Node],
    store_url: str,
    google: GoogleCalendarServer,
    exchange: EwsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert exchange.ca_path is not None
    front = urlsplit(exchange.url).netloc
    balancer = Balancer(front, tmp_path / "ca" / "mitmproxy-ca-cert.pem", exchange.ca_path)
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", balancer.adapter())
    for node in nodes:
        balancer.put(node)
    boxes = [Mailbox(u, account(exchange.url, u, PASSWORD)) for u in USERS]
    # every user's first (full) sync made and its lease taken before the burst
    held = wait_for(
        lambda: lease_holders(store_url), lambda h: len(h) == 3, timeout=30, what="leases"
    )
    assert len(held) == 3, held

    faults = google.url + "/_admin/faults"
    send_json(faults, "POST", {"kind": "latency", "latencyMs": GOOGLE_LATENCY_MS})
    killed: Outage | None = None
    stalled: Outage | None = None
    pool = ThreadPoolExecutor(len(boxes))
    try:
        for number, step in enumerate(BURST):
            if number == KILL_AT:
                victim = busiest(nodes, store_url)
            if number == PAUSE_AT:
                stalled = stop(busiest(nodes, store_url), store_url, balancer, signal.SIGSTOP)
            if number == RESTART_AT:
                assert killed is not None and stalled is not None
                # resumed once past PAUSE_S and its users are with another node
                time.sleep(max(0.0, stalled.at + PAUSE_S - time.time()))
                wait_for(
                    functools.partial(stalled.moved, store_url),
                    bool,
                    timeout=max(0.0, stalled.at + TAKEOVER_S - time.time()),
                    what="the paused node's users to move",
                )
                stalled.node.resume()
                stalled.until = time.time()
                balancer.put(stalled.node)
                balancer.put(killed.node.start())
            round_ = [pool.submit(box.do, step) for box in boxes]
            if number == KILL_AT:
                killed = stop(victim, store_url, balancer, signal.SIGKILL)
            wait(round_)
            if number == PAUSE_AT - 2:
                edit_in_google(google, boxes)
    finally:
        pool.shutdown()
        send_json(faults, "DELETE")
    assert killed is not None and stalled is not None

    # --- quiesce: the outbox empty and both sides alike, for every user
    direct = {
        b.user: account(f"https://localhost:{exchange.port}/EWS/Exchange.asmx", b.user, PASSWORD)
        for b in boxes
    }

    def both_sides() -> tuple[dict[str, int], list[tuple[Any, ...]]]:
        sides = []
        for user in USERS:
            events = google_events(google.api_endpoint, user)
            sides.append(
                (
                    user,
                    exchange_items(direct[user]),
                    {e["id"]: seen(e) for e in events},
                    sorted(e["id"] for e in events),
                )
            )
        return outbox(store_url), sides

    left, sides = wait_for(
        both_sides,
        lambda got: not got[0] and all(ex == go for _, ex, go, _ in got[1]),
        timeout=45,
        what="every outbox entry written and both sides alike",
    )
    assert left == {}, left  # nothing pending, nothing quarantined
    for user, in_exchange, in_google, event_ids in sides:
        assert in_google == in_exchange, user  # nothing lost, nothing left over
        assert event_ids == sorted(in_exchange), user  # and no item with two events
        kept = [e for e in in_exchange.values() if e["summary"].startswith("Kept")]
        assert [e["summary"] for e in kept] == [f"Kept, edited in Google ({user})"], user

    # --- one node at a time synced each user
    runs = runs_of(nodes, {killed.pid: killed.at})
    assert one_node_at_a_time(runs, stalled) == []
    assert {r.user for r in runs} == set(USERS)
    for outage in (killed, stalled):
        assert outage.held, outage  # it held leases: its users had to move
        for user, fence in outage.held.items():
            took = taken_over(runs, user, outage.pid, fence, outage.at)
            assert took is not None, f"{user} never left {outage}"
            assert took - outage.at < TAKEOVER_S, f"{user} left {took - outage.at:.1f} s after"
            assert took < outage.until, f"{user} waited for {outage}"

    # --- no invitation: every write of calsync's (and of the clients) sent none
    assert {c.send_updates for c in google.state.calls} == {"none"}
    assert {r["value"] for r in exchange.service.records()} == {"SendToNone"}
    # the burst went through every node, and the kill did land mid-burst
    assert set(balancer.sent) == {0, 1, 2}
    print(
        f"outbox at the kill: {killed.outbox}; the clients lost answers: "
        f"{[b.unknown for b in boxes]}; requests per node: {balancer.sent}"
    )


@dataclass
class Outage:
    """A node stopped by the test: killed (SIGKILL) or paused (SIGSTOP)."""

    node: Node
    pid: int
    held: dict[str, int]  # the fences of the users whose leases it held then
    outbox: dict[str, int]  # the outbox then
    at: float
    until: float = float("inf")  # when it was resumed

    def moved(self, url: str) -> bool:
        """Another node holds each user whose lease it held."""
        now = lease_holders(url)
        return all(user in now and now[user][0] != self.pid for user in self.held)


def busiest(nodes: list[Node], url: str) -> Node:
    """The running node holding the most leases (waiting for one to hold any)."""
    candidates = wait_for(
        lambda: holding(nodes, url), bool, timeout=2 * LEASE_S + 10, what="a lease holder"
    )
    assert candidates, "no running node holds a lease"
    return candidates[0][1]


def stop(node: Node, url: str, balancer: Balancer, how: signal.Signals) -> Outage:
    """Take the node out of rotation and stop it: SIGKILL while a client's request is in
    flight there, SIGSTOP while it runs a user's sync (so it stalls inside a run)."""

    def ready() -> bool:
        if how == signal.SIGKILL:
            return balancer.busy(node)
        lines = node.lease_lines()
        return lines.count("run began") > lines.count("run ended")

    deadline = time.monotonic() + 3
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.001)
    balancer.take_out(node)
    pid, at = node.pid, time.time()
    if how == signal.SIGKILL:
        node.crash()
    else:
        node.pause()
    # a lease outlives its holder until it expires: these are the ones it held
    held = {user: fence for user, (p, fence) in lease_holders(url).items() if p == pid}
    return Outage(node, pid, held, outbox(url), at)


def edit_in_google(google: GoogleCalendarServer, boxes: list[Mailbox]) -> None:
    """Each user renames "Kept" in Google Calendar (once its event is there)."""
    for box in boxes:
        event_id = event_id_for(box.items["Kept"].id)
        service = calendar_service(google.api_endpoint, box.user)
        wait_for(
            lambda: any(e["id"] == event_id for e in google_events(google.api_endpoint, box.user)),  # noqa: B023
            bool,
            timeout=20,
            what="Kept in Google",
        )
        service.events().patch(
            calendarId="primary",
            eventId=event_id,
            body={"summary": f"Kept, edited in Google ({box.user})"},
            sendUpdates="none",
        ).execute()
