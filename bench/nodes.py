"""Several calsync nodes on one PostgreSQL (issue 15): what they mirror, what it costs the
database, and how soon a dead node's users move on, in one run.

    .venv/bin/python bench/nodes.py [--events 600] [--clients 6] [--kills 10] [--lease-s 30]
                                    [--only throughput|takeover]

Everything on 127.0.0.1 over plain HTTP (TLS would measure handshakes): the EWS and Google
stand-ins as processes of their own (`python -m emulators.ews|google`, three users), a
PostgreSQL server of its own (tests/sync/state/pg_server.py: Debian's initdb and pg_ctl,
durability off as in the tests, pg_stat_statements loaded), and calsync nodes: each a
`mitmdump -s addon/calsync.py` in reverse mode in front of the EWS stand-in, with a
calsync.toml of its own naming the same `[store] url`, the same sealing key in each one's
environment, and its worker process (the default `calsync_worker_processes=1`).

(a) Throughput: `--events` CreateItem requests (three users in turn) from `--clients`
    keep-alive connections, each connection to one node (the nodes in turn, as a TCP load
    balancer spreads connections), each sending as soon as answered. Mirrored events per
    second: the events over the time from the first request to the moment the Google
    stand-in holds all of them and the outbox is empty. The two-way job is off
    (calsync_sync_interval=0): this is the mirror's path. With 1, 2 and 3 nodes on
    PostgreSQL, and one node on SQLite (`[store] path`). Per configuration: events/s, the
    ratio to one PostgreSQL node, the share of it each node brings (ratio / nodes);
    statements and transactions on the server per mirrored event (pg_stat_statements'
    calls, which count BEGIN, COMMIT and the per-user advisory locks, and
    pg_stat_database's commits and rollbacks: a unit's BEGIN and lock are pipelined with
    its first statement, so round trips are fewer than statements); CPU per mirrored
    event (utime+stime from /proc) of the nodes (mitmdump and its worker) and of the
    server's backends; and GetItems per mirrored event (the EWS stand-in's log): a worker
    that writes an entry another node recorded reads the item from Exchange, the request's
    bytes being in that node's memory only. A node records its entries held for its own
    worker (sync/sources/outbox.py HOLD_S), so this stays near 0 while every node keeps up.

(b) Takeover after a SIGKILL: three nodes as deployed ([store] lease_s = `--lease-s`, the
    two-way job every 60 s, EWS streaming notifications on). `--kills` times: a change
    made directly in Exchange (not through a proxy) has a node take the user's lease and
    carry it; that node is SIGKILLed (its process group: mitmdump and its worker) and at
    once another change is made directly in Exchange. Measured from the kill: when another
    node holds the user's lease (the leases table, polled every 50 ms), and when the
    change is in Google. The killed node is started again before the next round.

The machine's core count is printed: nodes on one machine share its cores, so the figures
of (a) say what several nodes cost, not what several machines give.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from bench.proxy import CREATE_ITEM, created_event, percentile, running, stand_in  # noqa: E402
from bench.streaming import cpu_s  # noqa: E402
from sync.state.sqlite import outbox_size  # noqa: E402
from tests.e2e.processes import Mitmdump, children  # noqa: E402
from tests.sync.state.pg_server import PostgresServer, find_bindir  # noqa: E402

USERS = ("alice@example.com", "bob@example.com", "carol@example.com")
PASSWORD = "secret"
PASSWORD_ENV = "CALSYNC_BENCH_PASSWORD"
#: a backend idle this long has reported its transactions to pg_stat_database (PostgreSQL 15
#: flushes a busy backend's counters at most once a second, an idle one's within 10 s)
STATS_FLUSH_S = 11.0


def auth(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()


def create_item(subject: str) -> bytes:
    return CREATE_ITEM.replace(b"Benchmark", subject.encode())


# --- the deployment ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StandIns:
    ews_url: str
    google_url: str
    ews_log: Path  # one line an EWS operation ("GetItem -> 200")

    def item_reads(self) -> int:
        """GetItems Exchange has answered so far: a worker's full reads of an item whose
        request bytes it did not have."""
        return self.ews_log.read_text(errors="replace").count("GetItem -> 200")


def write_config(directory: Path, stand_ins: StandIns, store: str, extra: str = "") -> Path:
    """A node's calsync.toml; `store` is the [store] table's body."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        "[store]",
        store,
        "[google]",
        f'api_endpoint = "{stand_ins.google_url}/calendar/v3/"',
        f'token_uri = "{stand_ins.google_url}/token"',
        "[exchange]",
        f'ews_url = "{stand_ins.ews_url}"',
        extra,
    ]
    for user in USERS:
        token = directory / f"{user}.json"
        token.write_text(
            json.dumps(
                {
                    "token": user,  # the stand-in's access token for a user is the address
                    "refresh_token": f"refresh-{user}",
                    "token_uri": f"{stand_ins.google_url}/token",
                    "client_id": "bench",
                    "client_secret": "bench",
                    "scopes": ["https://www.googleapis.com/auth/calendar"],
                }
            )
        )
        token.chmod(0o600)
        lines += [
            "[[users]]",
            f'mailbox = "{user}"',
            f'google_token_file = "{token}"',
            f'exchange_password_env = "{PASSWORD_ENV}"',
        ]
    path = directory / "calsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def stand_ins(directory: Path) -> Iterator[StandIns]:
    """Both stand-ins, fresh (empty calendars), as processes of their own."""
    directory.mkdir(parents=True)
    users = [a for u in USERS for a in ("--user", f"{u}:{PASSWORD}")]
    ews_ready = re.compile(r"listening on (http://127\.0\.0\.1:\d+/EWS/Exchange\.asmx)")
    google_ready = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
    google_users = [a for u in USERS for a in ("--user", u)]
    with (
        running(stand_in("emulators.ews", *users), ews_ready, directory / "ews.log") as ews_url,
        running(
            stand_in("emulators.google", *google_users), google_ready, directory / "google.log"
        ) as google_url,
    ):
        yield StandIns(ews_url, google_url, directory / "ews.log")


class Node(Mitmdump):
    """A calsync node (tests/e2e/processes.py's mitmdump), reverse proxy to the EWS stand-in."""

    def __init__(self, directory: Path, config: Path, ews_url: str, key: str, **options: str):
        ews = urlsplit(ews_url)
        super().__init__(
            directory,
            options={
                "mode": f"reverse:{ews.scheme}://{ews.netloc}/",
                "calsync_config": str(config),
                **options,
            },
            env={PASSWORD_ENV: PASSWORD, "CALSYNC_STORE_KEY": key},
            name="node",
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def crash(self) -> None:
        """SIGKILL to the node's process group: the machine dies, not one process."""
        os.killpg(self.pid, signal.SIGKILL)
        self.kill()

    def cpu_s(self) -> float:
        return sum(cpu_s(p) for p in [self.pid, *children(self.pid)])


@contextmanager
def started(nodes: list[Node]) -> Iterator[list[Node]]:
    try:
        threads = [threading.Thread(target=n.start) for n in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        missing = [n for n in nodes if n.port is None]
        if missing:
            raise RuntimeError(f"a node did not start:\n{missing[0].log()[-3000:]}")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


class Database:
    """The PostgreSQL server for the whole run, with pg_stat_statements loaded."""

    def __init__(self, work: Path) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise SystemExit("PostgreSQL is not installed (as root: apt-get install postgresql)")
        self.server = PostgresServer(bindir)
        self.server.start()
        with self.server.admin() as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        # pg_ctl restart keeps the options the server was started with (postmaster.opts)
        log = str(self.server.data.parent / "server.log")
        self.server._run("pg_ctl", "-D", str(self.server.data), "-l", log, "-w", "restart")
        with self.server.admin() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.work = work

    def fresh(self) -> str:
        """The URL of a new, empty database."""
        return self.server.url(self.server.create_database())

    def counters(self, url: str) -> tuple[int, int]:
        """(statements, transactions) the server has run in `url`'s database so far."""
        name = url.rsplit("/", 1)[1]
        with self.server.admin() as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            statements = conn.execute(
                "SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements s"
                " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
                [name],
            ).fetchone()
            xacts = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                [name],
            ).fetchone()
        assert statements is not None and xacts is not None
        return int(statements[0]), int(xacts[0])

    def backends_cpu_s(self) -> float:
        """CPU of the server's processes now running (the nodes' pooled connections)."""
        postmaster = int((self.server.data / "postmaster.pid").read_text().split()[0])
        return sum(cpu_s(p) for p in [postmaster, *children(postmaster)])

    def stop(self) -> None:
        self.server.stop()


def outbox(store: str) -> int:
    """Outbox entries left (a PostgreSQL URL or a SQLite path)."""
    if not store.startswith("postgresql://"):
        return outbox_size(Path(store))
    with psycopg.connect(store) as conn:
        row = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
    return int(row[0]) if row else 0


def google_count(google_url: str) -> int:
    """Events in the three users' Google calendars."""
    total = 0
    for user in USERS:
        request = urllib.request.Request(
            f"{google_url}/calendar/v3/calendars/primary/events?maxResults=2500&fields=items(id)",
            headers={"Authorization": f"Bearer {user}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            total += len(json.loads(answer.read()).get("items", []))
    return total


def in_google(google_url: str, user: str, event_id: str) -> bool:
    request = urllib.request.Request(
        f"{google_url}/calendar/v3/calendars/primary/events/{event_id}",
        headers={"Authorization": f"Bearer {user}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


# --- (a) throughput ----------------------------------------------------------------------------


def load(ports: list[int], events: int, clients: int) -> float:
    """Send `events` CreateItems from `clients` connections, connection i to node
    i mod nodes, the users in turn; returns when the last is answered (time.monotonic())."""
    numbers = itertools.count()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports[index % len(ports)], timeout=60)
        try:
            while True:
                with lock:
                    number = next(numbers)
                if number >= events:
                    return
                user = USERS[number % len(USERS)]
                conn.request(
                    "POST",
                    "/EWS/Exchange.asmx",
                    body=create_item(f"Mirrored {number}"),
                    headers={"Authorization": auth(user), "Content-Type": "text/xml"},
                )
                reply = conn.getresponse()
                body = reply.read()
                if reply.status != 200 or b"NoError" not in body:
                    raise RuntimeError(f"CreateItem: HTTP {reply.status} {body[:200]!r}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.monotonic()


@dataclass
class Measured:
    name: str
    nodes: int
    events: int
    seconds: float
    answered_s: float
    statements: int | None
    transactions: int | None
    node_cpu_s: float
    server_cpu_s: float | None
    item_reads: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def measure(
    args: argparse.Namespace,
    work: Path,
    stand_ins: StandIns,
    db: Database,
    count: int,
    *,
    sqlite: bool = False,
) -> Measured:
    name = f"{'sqlite' if sqlite else 'postgres'}-{count}"
    before_google = google_count(stand_ins.google_url)
    url = "" if sqlite else db.fresh()
    store = str(work / name / "calsync.db") if sqlite else url
    key = Fernet.generate_key().decode()
    nodes = []
    for index in range(count):
        directory = work / name / f"node{index}"
        table = f'path = "{store}"' if sqlite else f'url = "{url}"'
        config = write_config(directory, stand_ins, table, "streaming = false")
        nodes.append(Node(directory, config, stand_ins.ews_url, key, calsync_sync_interval="0"))
    with started(nodes):
        # the worker processes warm up (bench/proxy.py (c): ~1-2 s), and the server's
        # backends report their transactions to pg_stat_database once idle for a while
        time.sleep(STATS_FLUSH_S)
        counters = None if sqlite else db.counters(url)
        cpu_nodes = sum(n.cpu_s() for n in nodes)
        cpu_server = None if sqlite else db.backends_cpu_s()
        reads = stand_ins.item_reads()
        began = time.monotonic()
        answered = load([n.port or 0 for n in nodes], args.events, args.clients)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if outbox(store) == 0 and google_count(stand_ins.google_url) - before_google >= (
                args.events
            ):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{name}: not every event reached Google within 600 s")
        seconds = time.monotonic() - began
        reads = stand_ins.item_reads() - reads
        node_cpu = sum(n.cpu_s() for n in nodes) - cpu_nodes
        server_cpu = None if sqlite else db.backends_cpu_s() - (cpu_server or 0.0)
        statements = transactions = None
        if counters is not None:
            statements = db.counters(url)[0] - counters[0]  # pg_stat_statements: at once
            time.sleep(STATS_FLUSH_S)
            transactions = db.counters(url)[1] - counters[1]
    return Measured(
        name,
        count,
        args.events,
        seconds,
        answered - began,
        statements,
        transactions,
        node_cpu,
        server_cpu,
        reads,
    )


def throughput(args: argparse.Namespace, work: Path, stand_ins: StandIns, db: Database) -> None:
    rows = [measure(args, work, stand_ins, db, 1, sqlite=True)]
    rows += [measure(args, work, stand_ins, db, n) for n in (1, 2, 3)]
    one = rows[1].rate
    print(
        f"\n(a) throughput: {args.events} CreateItem from {args.clients} connections spread"
        f" over the nodes; {os.cpu_count()} cores shared by every process"
    )
    print(
        f"{'store':<10}{'nodes':>6}{'events/s':>10}{'x 1 node':>10}{'per node':>10}"
        f"{'answered s':>12}{'stmts/ev':>10}{'xacts/ev':>10}{'node ms/ev':>12}{'pg ms/ev':>10}"
        f"{'reads/ev':>10}"
    )
    for row in rows:
        per_event = {
            k: f"{v / row.events:.1f}" if v is not None else "-"
            for k, v in (("stmts", row.statements), ("xacts", row.transactions))
        }
        server_ms = f"{row.server_cpu_s * 1000 / row.events:.2f}" if row.server_cpu_s else "-"
        ratio = row.rate / one
        print(
            f"{row.name.split('-')[0]:<10}{row.nodes:>6}{row.rate:>10.1f}{ratio:>10.2f}"
            f"{ratio / row.nodes:>10.2f}{row.answered_s:>12.1f}{per_event['stmts']:>10}"
            f"{per_event['xacts']:>10}{row.node_cpu_s * 1000 / row.events:>12.2f}"
            f"{server_ms:>10}{row.item_reads / row.events:>10.2f}"
        )
    print(
        "(events/s: first request -> every event in Google, outbox empty; answered s: when"
        " the clients had every answer; stmts: pg_stat_statements calls incl. BEGIN/COMMIT"
        " and advisory locks; xacts: pg_stat_database commits + rollbacks; ms/ev: CPU,"
        " utime+stime from /proc; reads: GetItems of a worker that did not have the"
        " request's bytes, which only the node that proxied it keeps)"
    )


# --- (b) takeover ------------------------------------------------------------------------------

_STREAMING = re.compile(r"streaming notifications on \d+ connection")


def direct_create(ews_url: str, user: str, subject: str) -> str:
    """A CreateItem straight at Exchange (no proxy); the Google event id it will have."""
    ews = urlsplit(ews_url)
    conn = http.client.HTTPConnection(ews.hostname or "127.0.0.1", ews.port, timeout=30)
    try:
        conn.request(
            "POST",
            ews.path,
            body=create_item(subject),
            headers={"Authorization": auth(user), "Content-Type": "text/xml"},
        )
        reply = conn.getresponse()
        body = reply.read()
    finally:
        conn.close()
    if reply.status != 200 or b"NoError" not in body:
        raise RuntimeError(f"CreateItem: HTTP {reply.status} {body[:200]!r}")
    return created_event(body)


def holder_pid(url: str, user: str) -> int | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT holder FROM leases WHERE mailbox = %s AND expires_at > %s",
            [user, time.time()],
        ).fetchone()
    return int(row[0].split("/")[1]) if row else None  # "host/pid/random"


def until(check: object, limit: float, what: str, step: float = 0.05) -> float:
    """Poll `check()` until true; when (time.time()). Raises after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {limit:g} s: {what}")
        time.sleep(step)
    return time.time()


def takeover(args: argparse.Namespace, work: Path, stand_ins: StandIns, db: Database) -> None:
    url = db.fresh()
    key = Fernet.generate_key().decode()
    user = USERS[0]
    nodes = []
    for index in range(3):
        directory = work / "takeover" / f"node{index}"
        table = f'url = "{url}"\nlease_s = {args.lease_s}'
        config = write_config(directory, stand_ins, table, "streaming = true")
        nodes.append(Node(directory, config, stand_ins.ews_url, key, calsync_sync_interval="60"))
    leases: list[float] = []
    changes: list[float] = []
    with started(nodes):
        for node in nodes:
            until(lambda n=node: _STREAMING.search(n.log()), 60, "streaming")
        for kill in range(args.kills):
            warm = direct_create(stand_ins.ews_url, user, f"Before kill {kill}")
            until(lambda e=warm: in_google(stand_ins.google_url, user, e), 120, "a first change")
            pid = holder_pid(url, user)
            (victim,) = [n for n in nodes if n.process is not None and n.pid == pid]
            killed_at = time.time()
            victim.crash()
            event_id = direct_create(stand_ins.ews_url, user, f"After kill {kill}")
            lease_at = until(
                lambda p=pid: holder_pid(url, user) not in (None, p), 300, "the lease to move"
            )
            change_at = until(
                lambda e=event_id: in_google(stand_ins.google_url, user, e), 300, "the change"
            )
            leases.append(lease_at - killed_at)
            changes.append(change_at - killed_at)
            print(
                f"  kill {kill + 1}: lease moved after {leases[-1]:.1f} s, change in Google"
                f" after {changes[-1]:.1f} s",
                flush=True,
            )
            victim.start()
            until(lambda v=victim: _STREAMING.search(v.log()), 60, "streaming after restart")
    print(
        f"\n(b) takeover after SIGKILL: {args.kills} kills of the node holding {user}'s lease"
        f" ([store] lease_s = {args.lease_s:g}, two-way job every 60 s, EWS streaming on,"
        " 3 nodes)"
    )
    print(f"{'from the kill':<34}{'p50 s':>8}{'min s':>8}{'max s':>8}")
    for label, values in (
        ("another node holds the lease", leases),
        ("a change made then is in Google", changes),
    ):
        ordered = sorted(values)
        print(
            f"{label:<34}{statistics.median(ordered):>8.1f}{ordered[0]:>8.1f}"
            f"{percentile(ordered, 1.0):>8.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=600, help="creates mirrored in (a)")
    parser.add_argument("--clients", type=int, default=6, help="client connections in (a)")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs timed in (b)")
    parser.add_argument("--lease-s", type=float, default=30.0, help="[store] lease_s in (b)")
    parser.add_argument("--only", choices=("throughput", "takeover"), help="run one part")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="calsync-bench-nodes-"))
    db = Database(work)
    try:
        if args.only in (None, "throughput"):
            with stand_ins(work / "throughput") as both:
                throughput(args, work, both, db)
        if args.only in (None, "takeover"):
            with stand_ins(work / "takeover") as both:
                takeover(args, work, both, db)
    finally:
        db.stop()
        if not os.environ.get("CALSYNC_BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(work)
    return 0


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        raise SystemExit(main())
