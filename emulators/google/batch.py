"""The batch endpoint's wire format: multipart/mixed of application/http parts.

Reference: https://developers.google.com/workspace/calendar/api/guides/batch
("Each part begins with its own Content-Type: application/http HTTP header ... The server
... returns a single HTTP response of type multipart/mixed ... each part's Content-ID is
the request's Content-ID prefixed with `response-`"), and RFC 2046 for multipart/mixed.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
import uuid
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from emulators.google.api import Request, Response


class BatchFormatError(ValueError):
    pass


@dataclass(slots=True)
class Part:
    content_id: str | None
    request: Request


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def parse(content_type: str, body: bytes) -> list[Part]:
    from emulators.google.api import Request

    if not content_type.lower().startswith("multipart/mixed"):
        raise BatchFormatError("Batch requests must be multipart/mixed.")
    raw = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    if not message.is_multipart():
        raise BatchFormatError("Batch requests must be multipart/mixed.")
    parts = []
    for item in message.get_payload():
        if not isinstance(item, Message):
            raise BatchFormatError("Each part of a batch must be application/http.")
        content_id = item.get("Content-ID")
        payload = item.get_payload(decode=False)
        if not isinstance(payload, str):
            raise BatchFormatError("Each part of a batch must be application/http.")
        head, _, inner_body = payload.replace("\r\n", "\n").partition("\n\n")
        lines = head.split("\n")
        request_line = lines[0].split(" ")
        if len(request_line) < 2:
            raise BatchFormatError("Bad request line in batch part.")
        headers: dict[str, str] = {}
        for line in _unfold("\n".join(lines[1:])).split("\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        target = urlsplit(request_line[1])
        data = inner_body.encode("utf-8")
        if "content-length" in headers and headers["content-length"].isdigit():
            data = data[: int(headers["content-length"])]
        else:
            data = data.rstrip(b"\n")
        parts.append(Part(_unfold(content_id) if content_id else None,
                          Request(request_line[0].upper(), target.path, target.query,
                                  headers, data)))
    return parts


def _response_id(content_id: str | None) -> str | None:
    if content_id is None:
        return None
    if content_id.startswith("<") and content_id.endswith(">"):
        return f"<response-{content_id[1:-1]}>"
    return f"response-{content_id}"


def serialize(answers: list[tuple[str | None, Response]]) -> tuple[str, bytes]:
    boundary = f"batch_{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for content_id, response in answers:
        status = response.status or 503
        head = [f"--{boundary}", "Content-Type: application/http"]
        response_id = _response_id(content_id)
        if response_id is not None:
            head.append(f"Content-ID: {response_id}")
        reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        inner = [f"HTTP/1.1 {status} {reason}"]
        inner += [f"{k}: {v}" for k, v in response.headers.items()]
        inner.append(f"Content-Length: {len(response.body)}")
        text = "\r\n".join(head) + "\r\n\r\n" + "\r\n".join(inner) + "\r\n\r\n"
        chunks.append(text.encode() + response.body + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return boundary, b"".join(chunks)
