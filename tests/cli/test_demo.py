"""`calsync demo` (what `scripts/demo` runs once it has set up .venv), run as CI runs it
(`CI=true`, no terminal): it converges, prints both calendars side by side with the
latencies, leaves no process behind and no secret in its output or logs. One full run is
shared by the tests of this module (it takes seconds). The command is the one installed
beside the interpreter running the tests: `scripts/demo` would use (and set up)
<repo>/.venv, whichever environment the tests run in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

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
    return DemoRun(
        workdir, done.returncode, done.stdout, done.stderr, time.monotonic() - started
    )


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
