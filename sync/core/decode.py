"""Bounded decoding of an HTTP body's Content-Encoding: bytes in, at most `limit` bytes out.

A client (or a server) can send a body that inflates a thousandfold: 1 MB of gzip becomes
1 GiB. mitmproxy's `get_content()` inflates it whole, so calsync never calls it; it takes
the raw bytes and the Content-Encoding header and decodes here, off mitmproxy's event loop,
in steps that never hold more than `limit` decoded bytes (plus one step's output), and
stops with `BodyTooLarge` as soon as the limit is passed.

Codings (RFC 9110 8.4.1; applied in the order listed, so decoded in reverse): identity,
gzip / x-gzip (several members too), deflate (zlib-wrapped as the RFC says, or raw as some
servers send it), br (brotlicffi, whose decompressor takes an output limit; the Brotli
module mitmproxy pins has none), zstd (with the window HTTP allows, RFC 8878 3.1.1.1.2).
"""

from __future__ import annotations

import io
import zlib
from typing import Final

from ews_parser.errors import CalsyncError

#: Input fed per call, and the most output one call may return: a bomb's peak memory is
#: the limit plus one step.
_STEP: Final = 64 * 1024
_OUT_STEP: Final = 256 * 1024
#: The largest zstd window an HTTP client must accept (RFC 8878: 8 MB).
_ZSTD_WINDOW: Final = 8 * 1024 * 1024


class BodyTooLarge(CalsyncError):
    """The decoded body would pass the limit: it is not read."""


class BodyEncodingError(CalsyncError):
    """An unknown coding, or bytes that are not what the coding says."""


def decode(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """`raw` decoded by every coding `content_encoding` lists, at most `limit` bytes."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    data = raw
    for coding in reversed(codings):
        data = _decode_one(data, coding, limit)
    if len(data) > limit:
        raise BodyTooLarge(f"body of {len(data)} bytes is over the limit of {limit}")
    return data


def _decode_one(data: bytes, coding: str, limit: int) -> bytes:
    if coding == "identity":
        return data
    if coding in ("gzip", "x-gzip"):
        return _zlib(data, zlib.MAX_WBITS | 16, limit)
    if coding == "deflate":
        try:
            return _zlib(data, zlib.MAX_WBITS, limit)
        except BodyEncodingError:
            return _zlib(data, -zlib.MAX_WBITS, limit)  # raw deflate, as IIS once sent
    if coding == "br":
        return _brotli(data, limit)
    if coding == "zstd":
        return _zstd(data, limit)
    raise BodyEncodingError(f"unknown content coding {coding!r}")


def _zlib(data: bytes, wbits: int, limit: int) -> bytes:
    out = _Bounded(limit)
    while True:  # one gzip member (or the zlib stream) at a time
        inflater = zlib.decompressobj(wbits)
        view, pos = memoryview(data), 0
        pending: bytes | memoryview = b""
        try:
            while not inflater.eof:
                if not pending and pos < len(view):
                    pending, pos = view[pos : pos + _STEP], pos + _STEP
                # at most one step of output a call: zlib keeps the rest for the next one
                piece = inflater.decompress(pending, _OUT_STEP)
                if not piece and not pending and pos >= len(view):
                    raise BodyEncodingError(f"{_name(wbits)} data ends early")
                out.add(piece)
                pending = inflater.unconsumed_tail
        except zlib.error as exc:
            raise BodyEncodingError(f"not valid {_name(wbits)} data: {exc}") from None
        data = inflater.unused_data + bytes(view[pos:])
        if not data or wbits != zlib.MAX_WBITS | 16:
            return out.value()


class _Bounded:
    """Decoded pieces, joined once at the end: holding them as a list (not a growing
    bytearray, whose reallocation copies) keeps a bomb's peak at the limit plus a step."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.pieces: list[bytes] = []

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self.limit:
            self.pieces.clear()
            raise BodyTooLarge(f"decoded body passes the limit of {self.limit} bytes")
        if piece:
            self.pieces.append(piece)

    def value(self) -> bytes:
        return b"".join(self.pieces)


def _name(wbits: int) -> str:
    return "gzip" if wbits > zlib.MAX_WBITS else "deflate"


def _brotli(data: bytes, limit: int) -> bytes:
    import brotlicffi

    decompressor = brotlicffi.Decompressor()
    out = _Bounded(limit)
    try:
        out.add(decompressor.process(data, output_buffer_limit=_OUT_STEP))
        while not decompressor.is_finished():
            if decompressor.can_accept_more_data():
                raise BodyEncodingError("br data ends early")  # all input taken
            out.add(decompressor.process(b"", output_buffer_limit=_OUT_STEP))
    except brotlicffi.error as exc:
        raise BodyEncodingError(f"not valid br data: {exc}") from None
    return out.value()


def _zstd(data: bytes, limit: int) -> bytes:
    import zstandard

    decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_WINDOW)
    out = _Bounded(limit)
    try:
        with decompressor.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            while piece := reader.read(_OUT_STEP):
                out.add(piece)
    except zstandard.ZstdError as exc:
        raise BodyEncodingError(f"not valid zstd data: {exc}") from None
    return out.value()
