"""What a client sent to Exchange through mitmdump and what Exchange answered, read back
from the flow file mitmdump writes (`save_stream_file`), one line per EWS request.

The end-to-end suites of third-party clients (DavMail, the EWS Managed API) print these
lines for each step, so a failing step shows the operations behind it, e.g.

    GetItem OccurrenceItemId -> NoError
    DeleteItem ItemId DeleteType=HardDelete -> ErrorItemNotFound
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mitmproxy import http
from mitmproxy.exceptions import FlowReadException
from mitmproxy.io import FlowReader

from ews_parser import EwsParseError, classify

#: attributes and elements worth naming in a line: they say how a client asks
_TELLING = re.compile(
    rb"\b(DeleteType|SendMeetingInvitations|SendMeetingCancellations|"
    rb"SendMeetingInvitationsOrCancellations|MessageDisposition)=\"([^\"]+)\"|"
    rb"<(?:\w+:)?(MimeContent|Restriction|ExtendedFieldURI|IncludeMimeContent|"
    rb"TimeZoneContext|UserConfigurationName)\b"
)

#: for answers ews_parser does not summarise (ConvertId, GetUserConfiguration, ...)
_RESPONSE_CODE = re.compile(rb"<(?:\w+:)?ResponseCode>(\w+)</")


@dataclass(frozen=True)
class Exchange:
    """One EWS request and its answer."""

    operation: str
    request: str  # what it named: folders, item id kinds, telling options
    status: int
    codes: tuple[str, ...]  # each response message's ResponseCode, or the fault's

    @property
    def ok(self) -> bool:
        return self.status == 200 and all(c == "NoError" for c in self.codes)

    def __str__(self) -> str:
        answer = ",".join(self.codes) or f"HTTP {self.status}"
        if self.status != 200 and self.codes:
            answer = f"HTTP {self.status} {answer}"
        return f"{self.operation} {self.request} -> {answer}".replace("  ", " ")


def exchanges(flows: Path) -> list[Exchange]:
    """Every EWS request in the flow file so far, in the order they completed."""
    if not flows.exists():
        return []
    found = []
    with flows.open("rb") as file:
        try:
            for flow in FlowReader(file).stream():
                if isinstance(flow, http.HTTPFlow) and flow.request.path.lower().startswith(
                    "/ews/"
                ):
                    exchange = _read(flow)
                    if exchange is not None:
                        found.append(exchange)
        except FlowReadException:
            pass  # the flow mitmdump is writing right now
    return found


def _read(flow: http.HTTPFlow) -> Exchange | None:
    body = flow.request.get_content(strict=False) or b""
    if not body:
        return None
    try:
        request = classify(body)
    except EwsParseError:
        return Exchange("(unreadable request)", "", _status(flow), ())
    named: list[str] = []
    for folder in request.folders:
        named.append(
            getattr(folder, "id", "") if type(folder).__name__.startswith("Dist") else "FolderId"
        )
    named += sorted({type(t).__name__ for t in request.targets})
    named += sorted(set(request.item_classes) - {""})
    for match in _TELLING.finditer(body):
        attribute, value, element = match.groups()
        named.append(f"{attribute.decode()}={value.decode()}" if attribute else element.decode())
    codes: tuple[str, ...] = ()
    answer_body = flow.response.get_content(strict=False) if flow.response is not None else None
    if answer_body:
        try:
            answer = classify(answer_body)
        except EwsParseError:
            pass
        else:
            if answer.fault_code:
                codes = (answer.fault_code,)
            else:
                codes = tuple(m.response_code or m.response_class for m in answer.messages)
            if not codes:
                codes = tuple(c.decode() for c in _RESPONSE_CODE.findall(answer_body))
    return Exchange(
        request.operation or "(no operation)",
        " ".join(dict.fromkeys(named)),
        _status(flow),
        codes,
    )


def _status(flow: http.HTTPFlow) -> int:
    return flow.response.status_code if flow.response is not None else 0


def since(flows: Path, start: int) -> list[str]:
    """The lines of the exchanges after the first `start` ones. A request answered 401 is
    left out (a client without preemptive auth, as DavMail, sends each request twice: first
    without credentials); a last line counts them."""
    sent = exchanges(flows)[start:]
    lines = [str(e) for e in sent if e.status != 401]
    challenged = len(sent) - len(lines)
    if challenged:
        lines.append(f"({challenged} of these first sent without credentials: HTTP 401)")
    return lines
