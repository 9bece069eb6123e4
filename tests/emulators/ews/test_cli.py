"""`python -m emulators.ews` / `calsync emulate ews`: started as a subprocess on port 0,
it prints the bound URL (and, with --tls, where the CA certificate is) on stdout."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.ews import cli
from tests.emulators.ews.conftest import make_account

ROOT = Path(__file__).resolve().parents[3]


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "emulators.ews", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def process() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _lines_until_url(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # blocks until the server has printed its URL
        lines.append(line.strip())
        if "listening on" in line:
            return lines
    raise AssertionError(f"no URL printed; stderr: {proc.stderr.read() if proc.stderr else ''}")


def test_port_zero_prints_the_bound_url_and_serves(process: list[subprocess.Popen[str]]) -> None:
    proc = _start("--port", "0", "--user", "alice@example.com:secret")
    process.append(proc)
    lines = _lines_until_url(proc)
    match = re.search(r"(http://127\.0\.0\.1:(\d+)/EWS/Exchange\.asmx)", lines[-1])
    assert match and int(match[2]) > 0
    account = make_account(match[1], "alice@example.com", "secret")
    assert account.calendar.name == "Calendar"


def test_tls_prints_the_ca_path(process: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    proc = _start("--tls-dir", str(tmp_path), "--user", "alice@example.com:secret")
    process.append(proc)
    lines = _lines_until_url(proc)
    assert lines[0] == f"CA certificate: {tmp_path / 'ca.pem'}"
    assert "https://127.0.0.1:" in lines[-1]
    assert (tmp_path / "ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_add_parser_registers_the_ews_subcommand() -> None:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="service"))
    args = parser.parse_args(["ews", "--port", "0", "--user", "a@example.com:pw",
                              "--impersonator", "svc@example.com:pw", "--tls"])
    assert args.run is cli.run
    assert (args.port, args.user, args.impersonator, args.tls) == (
        0, ["a@example.com:pw"], ["svc@example.com:pw"], True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--port", "70000", "--user", "a@example.com:pw"], "is not a port"),
     ([], "at least one --user"),
     (["--user", "no-password@example.com"], "ADDRESS:PASSWORD")],
)
def test_bad_arguments_are_one_line(argv: list[str], message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_calsync_emulate_ews_reaches_this_cli() -> None:
    # Registered in emulators/cli.py next to the Google stand-in.
    from sync.cli import build_parser

    args = build_parser().parse_args(["emulate", "ews", "--port", "0", "--user",
                                      "a@example.com:pw"])
    assert args.run is cli.run
