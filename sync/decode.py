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

#: zlib takes this much input per call; each call's output is capped by `max_length`.
_STEP: Final = 64 * 1024
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
    out = bytearray()
    rest = memoryview(data)
    while True:  # one gzip member (or the zlib stream) at a time
        inflater = zlib.decompressobj(wbits)
        try:
            while rest:
                chunk, rest = rest[:_STEP], rest[_STEP:]
                while chunk:
                    out += inflater.decompress(chunk, limit + 1 - len(out))
                    if len(out) > limit:
                        raise BodyTooLarge(f"decoded body passes the limit of {limit} bytes")
                    chunk = memoryview(inflater.unconsumed_tail)
                if inflater.eof:
                    break
            out += inflater.flush(limit + 1 - len(out))
        except zlib.error as exc:
            raise BodyEncodingError(f"not valid {_name(wbits)} data: {exc}") from None
        if len(out) > limit:
            raise BodyTooLarge(f"decoded body passes the limit of {limit} bytes")
        if not inflater.eof:
            raise BodyEncodingError(f"{_name(wbits)} data ends early")
        if inflater.unused_data:  # the next gzip member
            rest = memoryview(inflater.unused_data + bytes(rest))
        if not rest or wbits != zlib.MAX_WBITS | 16:
            return bytes(out)


def _name(wbits: int) -> str:
    return "gzip" if wbits > zlib.MAX_WBITS else "deflate"


def _brotli(data: bytes, limit: int) -> bytes:
    import brotlicffi

    decompressor = brotlicffi.Decompressor()
    out = bytearray()
    try:
        out += decompressor.process(data, output_buffer_limit=limit + 1)
        while len(out) <= limit and not decompressor.is_finished():
            if decompressor.can_accept_more_data():
                break  # all input taken and nothing more comes out: truncated
            out += decompressor.process(b"", output_buffer_limit=limit + 1 - len(out))
    except brotlicffi.error as exc:
        raise BodyEncodingError(f"not valid br data: {exc}") from None
    if len(out) > limit:
        raise BodyTooLarge(f"decoded body passes the limit of {limit} bytes")
    if not decompressor.is_finished():
        raise BodyEncodingError("br data ends early")
    return bytes(out)


def _zstd(data: bytes, limit: int) -> bytes:
    import zstandard

    decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_WINDOW)
    try:
        with decompressor.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            out = bytearray()
            while len(out) <= limit:
                chunk = reader.read(min(_STEP * 16, limit + 1 - len(out)))
                if not chunk:
                    break
                out += chunk
    except zstandard.ZstdError as exc:
        raise BodyEncodingError(f"not valid zstd data: {exc}") from None
    if len(out) > limit:
        raise BodyTooLarge(f"decoded body passes the limit of {limit} bytes")
    return bytes(out)
