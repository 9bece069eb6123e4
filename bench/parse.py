"""How fast ews_parser reads EWS, next to bare lxml on the same bytes, in one run.

    .venv/bin/python bench/parse.py [--seconds 1.0]

Two bodies, built from corpus samples:
- a ~3 KB CreateItem request (three calendar items, one recurring: the corpus batch);
- a ~2 MB FindItem CalendarView response: ~1,500 items of the Default shape Exchange 2010
  returns (the pyexchange sample), on one line with full-length 152-character ids, as real
  servers send them.

Targets (issue 2): classify >= 0.5 of bare lxml's rate; parse >= 3,000 calendar items/s
on one core. Ratios, not seconds, are what compare across machines.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ews_parser import classify, parse  # noqa: E402

FIXTURES = ROOT / "fixtures" / "ews"


def _one_line(xml: bytes) -> bytes:
    xml = re.sub(rb"<!--.*?-->", b"", xml, flags=re.S)
    return re.sub(rb">\s+<", b"><", xml).strip()


def _ews_id(n: int) -> str:
    raw = hashlib.sha256(str(n).encode()).digest() * 4
    return base64.b64encode(b"\x00\x00\x00\x00" + raw[:110]).decode()  # 152 characters


def create_item_request() -> bytes:
    return (
        FIXTURES / "create" / "msdocs_createitem_batch3_incl_weekly_recurrence_req.xml"
    ).read_bytes()


def find_item_response(target_bytes: int = 2_000_000) -> tuple[bytes, int]:
    sample = _one_line(
        (FIXTURES / "find" / "pyexchange_finditem_calendarview_resp.xml").read_bytes()
    )
    head, _, rest = sample.partition(b"<t:Items>")
    items_xml, _, tail = rest.partition(b"</t:Items>")
    template = items_xml[: items_xml.index(b"</t:CalendarItem>") + len(b"</t:CalendarItem>")]
    template = template.replace(b'Id="id1" ChangeKey="ck1"', b'Id="{id}" ChangeKey="{ck}"')
    template = template.replace(b"Event Subject 1", b"Event {n}")
    parts = []
    size = len(head) + len(tail)
    n = 0
    while size < target_bytes:
        item = (
            template.replace(b"{id}", _ews_id(n).encode())
            .replace(b"{ck}", _ews_id(-n)[:40].encode())
            .replace(b"{n}", str(n).encode())
        )
        parts.append(item)
        size += len(item)
        n += 1
    return head + b"<t:Items>" + b"".join(parts) + b"</t:Items>" + tail, n


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second, best of three rounds of about `seconds` / 3 each."""
    fn()  # warm up caches (zone lookups, field tables)
    best = 0.0
    for _ in range(3):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            fn()
            calls += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, calls / (now - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    args = parser.parse_args()

    create = create_item_request()
    find, find_items = find_item_response()
    print(f"CreateItem request: {len(create):,} bytes;", end=" ")
    print(f"FindItem response: {len(find):,} bytes, {find_items:,} items")
    print(f"{'body':<12} {'reader':<10} {'calls/s':>12} {'items/s':>12} {'vs bare lxml':>14}")
    results: dict[str, float] = {}
    for label, body, items in (("CreateItem", create, 3), ("FindItem", find, find_items)):
        bare = rate(lambda body=body: etree.fromstring(body), args.seconds)
        cheap = rate(lambda body=body: classify(body), args.seconds)
        full = rate(lambda body=body: parse(body), args.seconds)
        for reader, value in (("lxml", bare), ("classify", cheap), ("parse", full)):
            row = f"{label:<12} {reader:<10} {value:>12,.1f} {value * items:>12,.0f}"
            print(f"{row} {value / bare:>13.3f}x")
        results[f"{label}.classify_ratio"] = cheap / bare
        results[f"{label}.parse_items_per_s"] = full * items
    print()
    for label in ("CreateItem", "FindItem"):
        ratio = results[f"{label}.classify_ratio"]
        verdict = "ok" if ratio >= 0.5 else "MISSED"
        print(f"{label}: classify at {ratio:.2f} of bare lxml's rate (target >= 0.5): {verdict}")
    per_s = results["FindItem.parse_items_per_s"]
    verdict = "ok" if per_s >= 3000 else "MISSED"
    print(f"FindItem: parse reads {per_s:,.0f} calendar items/s (target >= 3,000): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
