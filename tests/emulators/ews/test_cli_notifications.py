"""`calsync emulate ews`'s notification options: they reach the stand-in's Policy, a bad
one is a one-line refusal (exit 2), and a stand-in started with them honours them."""

from __future__ import annotations

import argparse
import re
import time

import pytest

from emulators.ews import cli
from emulators.ews.subscriptions import Policy
from tests.emulators.ews.conftest import raw_post
from tests.emulators.ews.services.notifying import (
    RawStream,
    streaming_xml,
    sub_id_of,
    subscribe_xml,
)
from tests.emulators.ews.test_cli import _lines_until_url, _start


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    return parser.parse_args(["--user", "alice@example.com:secret", *argv])


def test_the_defaults_are_exchange_2016_on_premises() -> None:
    assert cli.policy(_args()) == Policy()


def test_options_reach_the_policy() -> None:
    got = cli.policy(_args("--hanging-connection-limit", "10", "--max-subscriptions", "20",
                           "--backends", "2", "--event-retention", "50",
                           "--minute-seconds", "0.5", "--heartbeat-seconds", "0.1"))
    assert got == Policy(hanging_connection_limit=10, max_subscriptions=20, backends=2,
                         event_retention=50, minute=0.5, heartbeat=0.1)


@pytest.mark.parametrize("option", ["--backends", "--hanging-connection-limit",
                                    "--minute-seconds"])
def test_a_bad_limit_is_refused_in_one_line(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(_args(option, "0")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("calsync emulate ews: ")


def test_a_started_stand_in_honours_them() -> None:
    # ConnectionTimeout 1 lasts --minute-seconds.
    proc = _start("--port", "0", "--user", "alice@example.com:alice-secret",
                  "--minute-seconds", "0.3", "--heartbeat-seconds", "5")
    try:
        match = re.search(r"(http://127\.0\.0\.1:\d+/EWS/Exchange\.asmx)",
                          _lines_until_url(proc)[-1])
        assert match
        sub_id = sub_id_of(raw_post(match[1], subscribe_xml())[2])
        began = time.monotonic()
        raw = RawStream(match[1], streaming_xml(sub_id))
        try:
            assert [d.status for d in raw.documents()] == ["OK", "Closed"]
        finally:
            raw.close()
        assert time.monotonic() - began < 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
