"""`calsync demo` (what `scripts/demo` runs once it has set up .venv), run as CI runs it
(`CI=true`, no terminal): it converges, prints both calendars side by side with the
latencies and what its own /metrics says, leaves no process behind and no secret in its
output or logs. One full run is shared by the tests of this module (it takes seconds). The
command is the one installed beside the interpreter running the tests: `scripts/demo` would
use (and set up) <repo>/.venv, whichever environment the tests run in.

The scrape is the one the demo made of its mitmdump's /metrics while everything still ran,
once both calendars agreed, kept as it came in the work dir (`metrics.txt`); the tests read
it with prometheus_client's own parser and hold it to the README's list of families."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sync.cli import demo as demo_command
from tests.cli.conftest import CALSYNC, ROOT, clean_env, processes_in

PASSWORD = "demo-Pa55word-7f3a9c"  # the test's own, looked for in the logs


@dataclass(frozen=True)
class DemoRun:
    workdir: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    workdir = tmp_path_factory.mktemp("demo") / "work"
    env = clean_env({"CI": "true", "CALSYNC_DEMO_EWS_PASSWORD": PASSWORD})
    started = time.monotonic()
    done = subprocess.run(
        [str(CALSYNC), "demo", "--workdir", str(workdir), "--zone", "Europe/Berlin"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    return DemoRun(workdir, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def test_the_demo_converges_and_shows_both_calendars(demo: DemoRun) -> None:
    assert demo.returncode == 0, demo.stderr + demo.stdout
    assert demo.seconds < 60
    out = demo.stdout
    assert "Exchange | Google" in out and "Europe/Berlin" in out
    for subject in ("Design review (agenda in doc)", "Team sync", "Team sync (with guests)"):
        assert subject in out
    assert "Lunch with Sam" not in out.split("Latency")[0]  # deleted on both sides
    assert "FREQ=WEEKLY;COUNT=6;BYDAY=MO" in out
    # the exception: shown as Google has it, carried or not
    assert "↳ occurrence #3 (exception)" in out
    assert "Both calendars agree" in out


def test_the_demo_measures_every_change(demo: DemoRun) -> None:
    assert demo.returncode == 0, demo.stderr
    latency = demo.stdout.split("Latency")[1]
    assert latency.count("Exchange -> Google") == 6
    assert latency.count("Google -> Exchange") == 1
    assert "timed out" not in latency
    assert latency.count(" ms ") == 7


def test_the_demo_stops_everything_it_started(demo: DemoRun) -> None:
    assert processes_in(demo.workdir) == []


def test_no_secret_reaches_the_output_or_the_logs(demo: DemoRun) -> None:
    token_file = demo.workdir / "tokens" / "alice@example.com.json"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = json.loads(token_file.read_text())
    secrets = [PASSWORD, token["client_secret"], token["refresh_token"]]
    assert token.get("token"), "the addon refreshed and saved the access token"
    secrets.append(token["token"])
    texts = {"stdout": demo.stdout, "stderr": demo.stderr}
    texts.update({p.name: p.read_text(errors="replace") for p in demo.workdir.glob("*.log")})
    assert "mitmdump.log" in texts and "ews-stand-in.log" in texts
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret is in {name}"


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    process = subprocess.Popen(
        [str(CALSYNC), "demo", "--workdir", str(workdir)],
        env=clean_env({"CI": "true"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (workdir / "mitmdump.log").exists():
            time.sleep(0.05)
        assert (workdir / "mitmdump.log").exists()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert processes_in(workdir) == []


# --- its own /metrics ---------------------------------------------------------------------

#: what the demo's changes are called: no label may carry an event's text
SUBJECTS = ("Design review", "Team sync", "Lunch with Sam", "Room")


@dataclass(frozen=True)
class Scrape:
    """A /metrics text, parsed by prometheus_client: family -> [(sample, labels, value)]."""

    samples: dict[str, list[tuple[str, dict[str, str], float]]]

    @classmethod
    def of(cls, text: str) -> Scrape:
        return cls(
            {
                family.name: [(s.name, s.labels, s.value) for s in family.samples]
                for family in text_string_to_metric_families(text)
            }
        )

    def names(self) -> set[str]:
        """Family names and sample names (a counter's family drops its `_total`)."""
        return set(self.samples) | {name for got in self.samples.values() for name, _, _ in got}

    def total(self, family: str, suffix: str = "", **labels: str) -> float:
        return sum(
            value
            for name, got, value in self.samples.get(family, [])
            if name == family + suffix and labels.items() <= got.items()
        )

    def one(self, family: str) -> float:
        (sample,) = self.samples[family]
        return sample[2]


def readme_families() -> set[str]:
    """The metric names in the table of the README's "Monitoring" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Monitoring\n", 1)[1].split("\n## ", 1)[0]
    return {
        name
        for line in section.splitlines()
        if line.lstrip().startswith("| `calsync_")
        for name in re.findall(r"`(calsync_\w+)", line)
    }


def check_families(scrape: Scrape) -> None:
    listed = readme_families()
    assert len(listed) >= 20, listed  # the table was found
    assert listed <= scrape.names(), f"not in the scrape: {sorted(listed - scrape.names())}"


def check_values(scrape: Scrape) -> None:
    """What the demo did, as the metrics should tell it."""
    latency = "calsync_change_latency_seconds"
    # the proxy carried the mail client's changes, each within the demo's own bounds
    proxy = scrape.total(latency, "_count", source="proxy")
    assert proxy >= 1
    assert scrape.total(latency, "_bucket", source="proxy", le="30.0") == proxy
    assert 0 < scrape.total(latency, "_sum", source="proxy") < 30 * proxy
    # the Google edit came back to Exchange (by the poll: push is off in the demo)
    assert scrape.total(latency, "_count", direction="google_to_exchange") >= 1
    for name, labels, value in scrape.samples[latency]:
        if name.endswith("_count") and value:
            assert (labels["source"], labels["direction"]) in {
                ("proxy", "exchange_to_google"),
                ("streaming", "exchange_to_google"),
                ("exchange_feed", "exchange_to_google"),
                ("google_feed", "google_to_exchange"),
            }, labels

    runs = "calsync_sync_runs"
    assert scrape.total(runs, "_total", outcome="changed") >= 1
    for outcome in ("error", "stopped", "backing_off", "failed"):
        assert scrape.total(runs, "_total", outcome=outcome) == 0, outcome
    duration = "calsync_sync_run_duration_seconds"
    assert scrape.total(duration, "_count") >= scrape.total(runs, "_total") >= 1
    assert scrape.total("calsync_conflicts", "_total") == 0
    assert scrape.total("calsync_outbox_entries", "_total", result="written") >= 1
    assert scrape.total("calsync_outbox_entries", "_total", result="quarantined") == 0
    # EWS streaming told calsync of the mail client's changes (some it held already)
    assert (
        scrape.total("calsync_notifications", "_total", source="streaming")
        + scrape.total("calsync_notifications_held", "_total", source="streaming")
        >= 1
    )
    assert scrape.total("calsync_notifications", "_total", source="push") == 0

    google, ews = "calsync_google_requests", "calsync_ews_requests"
    assert scrape.total(google, "_total", operation="events.list", status="ok") >= 1
    assert (
        scrape.total(google, "_total", operation="events.insert", status="ok")
        + scrape.total(google, "_total", operation="events.import", status="ok")
        >= 1
    )
    assert scrape.total(ews, "_total", operation="SyncFolderItems", status="200") >= 1
    assert scrape.total(ews, "_total", operation="GetItem", status="200") >= 1
    for family in (google, ews):
        statuses = {labels["status"] for _, labels, _ in scrape.samples[family]}
        failed = {s for s in statuses if s == "unreachable" or s.startswith("5")}
        assert not failed, (family, failed)

    # the outbox drained, nothing quarantined, one user, nothing paused, the store up
    for gauge in ("calsync_outbox_depth", "calsync_outbox_oldest_age_seconds"):
        assert scrape.one(gauge) == 0, gauge
    assert scrape.one("calsync_outbox_quarantined") == 0
    assert scrape.one("calsync_users") == 1
    assert scrape.one("calsync_users_paused") == 0
    assert scrape.one("calsync_store_up") == 1
    assert scrape.one("calsync_push_channels") == 0
    assert scrape.one("calsync_streaming_subscriptions") == 1
    assert scrape.total("calsync_streaming_connections", state="up") == 1
    assert scrape.total("calsync_streaming_connections", state="down") == 0
    assert scrape.samples["calsync_lease_holders"] == []  # one node on SQLite
    # per user ([admin] per_user_metrics): Alice's outbox empty, both sides read just now
    assert scrape.total("calsync_user_outbox_depth", user="alice@example.com") == 0
    assert scrape.samples["calsync_user_outbox_quarantined"] == [
        ("calsync_user_outbox_quarantined", {"user": "alice@example.com"}, 0.0)
    ]
    ages = {
        labels["side"]: value
        for _, labels, value in scrape.samples["calsync_user_last_sync_age_seconds"]
        if labels["user"] == "alice@example.com"
    }
    assert set(ages) == {"exchange", "google"} and max(ages.values()) < 30, ages

    # bounded labels: never an event's text
    for got in scrape.samples.values():
        for _, labels, _ in got:
            for text in labels.values():
                assert not any(subject in text for subject in SUBJECTS), labels


def own_scrape(demo: DemoRun) -> Scrape:
    return Scrape.of((demo.workdir / demo_command.METRICS_FILE).read_text())


def test_the_demo_serves_the_console_and_metrics(demo: DemoRun) -> None:
    assert demo.returncode == 0, demo.stderr + demo.stdout
    console = re.search(r"admin console \(read-only\) at (http://127\.0\.0\.1:\d+)/", demo.stderr)
    assert console, demo.stderr
    assert f"calsync's own {console.group(1)}/metrics" in demo.stdout
    assert "/readyz: ready (exchange, google, store, worker)" in demo.stdout
    config = (demo.workdir / "calsync.toml").read_text()
    assert "[admin]" in config and "password" not in config.split("[admin]")[1]


def test_its_scrape_shows_every_family_the_readme_lists(demo: DemoRun) -> None:
    check_families(own_scrape(demo))


def test_its_scrape_has_sensible_values(demo: DemoRun) -> None:
    check_values(own_scrape(demo))


def test_it_prints_what_its_scrape_says(demo: DemoRun) -> None:
    scrape = own_scrape(demo)
    shown = demo.stdout.split("/metrics, once both sides agreed")[1]
    proxy = scrape.total("calsync_change_latency_seconds", "_count", source="proxy")
    assert f"proxy to Google: {proxy:g}, median ≤ " in shown
    changed = scrape.total("calsync_sync_runs", "_total", outcome="changed")
    assert f"changed {changed:g}" in shown
    for family in readme_families():
        assert family in shown, family
    assert "(not in the scrape)" not in shown


@pytest.mark.parametrize(
    ("buckets", "median"),
    [
        # cumulative counts by upper bound: the median is in the first bucket holding half
        ({"0.05": 2, "0.1": 2, "10.0": 5, "+Inf": 5}, "median ≤ 10 s"),
        ({"0.05": 1, "0.25": 2, "+Inf": 2}, "median ≤ 0.05 s"),
        ({"0.05": 0, "+Inf": 3}, "median ≤ +Inf"),
        ({"0.05": 0, "+Inf": 0}, "no median"),
    ],
)
def test_the_median_is_the_bucket_that_holds_it(buckets: dict[str, int], median: str) -> None:
    lines = [
        f'calsync_sync_run_duration_seconds_bucket{{le="{le}"}} {n}' for le, n in buckets.items()
    ]
    text = "# TYPE calsync_sync_run_duration_seconds histogram\n" + "\n".join(lines) + "\n"
    rows = dict(demo_command.metric_rows(demo_command.parse_metrics(text)))
    assert rows["calsync_sync_run_duration_seconds"].endswith(median)
    assert rows["calsync_sync_runs_total"] == "(not in the scrape)"
