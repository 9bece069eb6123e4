"""The hardened parser refuses hostile and broken documents with `EwsParseError`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ews_parser.errors import EwsParseError
from ews_parser.xml import SOAP, parse_xml


def billion_laughs(levels: int = 10) -> bytes:
    entities = [b'<!ENTITY lol0 "lol">']
    for i in range(1, levels):
        entities.append(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10))
    return (
        b'<?xml version="1.0"?><!DOCTYPE lolz ['
        + b"".join(entities)
        + b"]><lolz>&lol%d;</lolz>" % (levels - 1)
    )


HOSTILE = [
    # entity expansion: 10^9 "lol"s if expanded
    pytest.param(billion_laughs(), "entity", id="billion-laughs"),
    # quadratic blowup: one big entity referenced many times
    pytest.param(
        b'<!DOCTYPE x [<!ENTITY a "' + b"A" * 50_000 + b'">]><x>' + b"&a;" * 5_000 + b"</x>",
        "",
        id="quadratic-blowup",
    ),
    # external entities: local file and network
    pytest.param(
        b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]><f>&x;</f>',
        "document type",
        id="xxe-file",
    ),
    pytest.param(
        b'<!DOCTYPE f [<!ENTITY x SYSTEM "http://127.0.0.1:1/x">]><f>&x;</f>',
        "document type",
        id="xxe-network",
    ),
    pytest.param(
        b'<!DOCTYPE f SYSTEM "http://127.0.0.1:1/evil.dtd"><f/>', "document type", id="external-dtd"
    ),
    # parameter entities reaching out
    pytest.param(
        b'<!DOCTYPE f [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><f/>',
        "",
        id="parameter-entity",
    ),
]


@pytest.mark.parametrize(("body", "says"), HOSTILE)
def test_hostile_documents_are_rejected(body: bytes, says: str) -> None:
    with pytest.raises(EwsParseError) as info:
        parse_xml(body)
    assert says.lower() in str(info.value).lower()


BROKEN = [
    # empty and truncated
    pytest.param(b"", "empty", id="empty"),
    pytest.param(
        b"<s:Envelope xmlns:s='" + SOAP.encode() + b"'><s:Body>", "premature end", id="truncated"
    ),
    # not XML at all
    pytest.param(b"\x00\xff\xfe\x00garbage", "", id="garbage-bytes"),
    pytest.param(b"HTTP/1.1 200 OK\r\n\r\n", "", id="http-text"),
    pytest.param(b"<a><b></a></b>", "mismatch", id="mismatched-tags"),
    pytest.param(b'<?xml version="1.0" encoding="no-such-codec"?><a/>', "", id="bad-encoding"),
]


@pytest.mark.parametrize(("body", "says"), BROKEN)
def test_broken_documents_are_rejected(body: bytes, says: str) -> None:
    with pytest.raises(EwsParseError) as info:
        parse_xml(body)
    assert says.lower() in str(info.value).lower()


def test_size_limit_is_checked_before_parsing() -> None:
    body = b"<a>" + b"x" * 2048 + b"</a>"
    with pytest.raises(EwsParseError, match=r"over the .* limit"):
        parse_xml(body, max_bytes=1024)
    assert parse_xml(body, max_bytes=4096).tag == "a"


def test_a_50_mb_body_is_refused_by_default() -> None:
    body = b"<a>" + b"<b>x</b>" * (50 * 1024 * 1024 // 8) + b"</a>"
    with pytest.raises(EwsParseError, match="MiB"):
        parse_xml(body)


def test_text_nodes_over_libxml2_limit_are_refused() -> None:
    # huge_tree is off: a single text node over 10 MB is refused even under the size limit
    body = b"<a>" + b"x" * (11 * 1024 * 1024) + b"</a>"
    with pytest.raises(EwsParseError):
        parse_xml(body)


def test_entity_bomb_costs_no_memory() -> None:
    # Run in a fresh interpreter so the peak RSS belongs to this parse alone.
    script = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(sys.path[0])!r})
        from tests.ews_parser.test_xml import billion_laughs
        from ews_parser.xml import parse_xml
        from ews_parser.errors import EwsParseError
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for levels in (10, 12, 15):
            try:
                parse_xml(billion_laughs(levels))
            except EwsParseError:
                pass
            else:
                sys.exit("parsed a bomb")
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    growth_kib = int(out.stdout.strip())
    assert growth_kib < 20 * 1024, f"peak RSS grew by {growth_kib} KiB"


def test_utf16_envelopes_parse() -> None:
    body = f'<?xml version="1.0" encoding="utf-16"?><s:Envelope xmlns:s="{SOAP}"/>'
    assert parse_xml(body.encode("utf-16")).tag == f"{{{SOAP}}}Envelope"


def test_str_is_refused_with_a_clear_message() -> None:
    with pytest.raises(EwsParseError, match="expected bytes"):
        parse_xml("<a/>")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "system_id",
    [
        "/dev/zero",  # would never end if read
        "file:///etc/passwd",
        "/etc/hostname",
    ],
)
def test_local_dtds_are_never_opened(system_id: str) -> None:
    body = f'<!DOCTYPE f SYSTEM "{system_id}"><f/>'.encode()
    with pytest.raises(EwsParseError, match="document type"):
        parse_xml(body)
