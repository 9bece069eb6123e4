"""MimeContent on the wire: the `t:MimeContent` element GetItem writes.

The conversion itself, iCalendar in (CreateItem) and out (GetItem), is mapping/ical.py's:
the worker reads DavMail's CreateItems with the same code the stand-in stores them with.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/mimecontent
"""

from __future__ import annotations

import base64

from lxml import etree

from ews_parser.xml import TYPES


def mime_element(data: bytes) -> etree._Element:
    """`t:MimeContent` as Exchange writes it: base64, CharacterSet UTF-8."""
    elem = etree.Element(f"{{{TYPES}}}MimeContent", CharacterSet="UTF-8")
    elem.text = base64.b64encode(data).decode("ascii")
    return elem
