"""Bounded Content-Encoding decoding (sync/core/decode.py): every coding, the errors, and bombs
stopped at the limit with memory to match."""

from __future__ import annotations

import gzip
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import brotlicffi
import pytest
import zstandard

from sync.core.decode import BodyEncodingError, BodyTooLarge, decode

BODY = b"<t:CalendarItem><t:Subject>Standup</t:Subject></t:CalendarItem>" * 2000
MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[3]


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotlicffi.compress,
    "zstd": zstd,
    "identity": lambda data: data,
}


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_each_coding_decodes_and_stops_at_the_limit(coding: str) -> None:
    raw = ENCODERS[coding](BODY)
    assert decode(raw, coding, len(BODY)) == BODY
    with pytest.raises(BodyTooLarge):
        decode(raw, coding, len(BODY) - 1)


@pytest.mark.parametrize(
    ("raw", "header", "expected"),
    [
        # no header, an empty one, odd case and spaces: identity
        (BODY, None, BODY),
        (BODY, "", BODY),
        (gzip.compress(BODY), " GZip ", BODY),
        # codings apply in the order listed, so they are undone in reverse
        (brotlicffi.compress(gzip.compress(BODY)), "gzip, br", BODY),
        # several gzip members are one body
        (gzip.compress(b"one ") + gzip.compress(b"two"), "gzip", b"one two"),
        # raw deflate, as some servers send "deflate"
        (zlib.compress(BODY)[2:-4], "deflate", BODY),
    ],
)
def test_header_forms(raw: bytes, header: str | None, expected: bytes) -> None:
    assert decode(raw, header, 10 * MiB) == expected


@pytest.mark.parametrize(
    ("raw", "header"),
    [
        (b"not gzip at all", "gzip"),
        (gzip.compress(BODY)[:-40], "gzip"),  # cut short
        (b"\x00\x01garbage", "br"),
        (brotlicffi.compress(BODY)[:-8], "br"),
        (b"garbage", "zstd"),
        (b"abc", "compress"),  # a coding nobody decodes here
        (b"abc", "gzip, frobnicate"),
    ],
)
def test_bad_bytes_or_codings_are_a_clear_error(raw: bytes, header: str) -> None:
    with pytest.raises(BodyEncodingError):
        decode(raw, header, 10 * MiB)


def _gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"\0" * MiB
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    return b"".join([*parts, compressor.flush()])


@pytest.mark.parametrize(
    ("coding", "bomb"),
    [
        ("gzip", lambda: _gzip_bomb(256 * MiB)),
        ("zstd", lambda: zstd(b"\0" * (64 * MiB))),
    ],
)
def test_a_bomb_stops_at_the_limit_holding_no_more(
    coding: str, bomb: Callable[[], bytes], tmp_path: Path
) -> None:
    """Measured in a process of its own: tracemalloc counts every thread's allocations, and
    threads other tests leave behind (stand-ins, streams) would count too."""
    raw = tmp_path / "bomb"
    raw.write_bytes(bomb())
    limit = 4 * MiB
    measure = (
        "import sys, tracemalloc\n"
        "from sync.core.decode import BodyTooLarge, decode\n"
        "raw = open(sys.argv[1], 'rb').read()\n"
        "tracemalloc.start()\n"
        "try:\n"
        "    decode(raw, sys.argv[2], int(sys.argv[3]))\n"
        "except BodyTooLarge:\n"
        "    print(tracemalloc.get_traced_memory()[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, str(raw), coding, str(limit)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    peak = int(done.stdout)  # empty, and so an error, when the bomb was not stopped
    assert peak < limit + MiB  # the limit plus one step of output


def test_a_brotli_bomb_stops_at_the_limit() -> None:
    raw = brotlicffi.compress(b"\0" * (256 * MiB), quality=4)
    assert len(raw) < 64 * 1024
    with pytest.raises(BodyTooLarge):
        decode(raw, "br", 4 * MiB)
