"""emulators/ews/mime.py: the `t:MimeContent` element the stand-in writes. (The iCalendar
conversion is mapping/ical.py's: tests/mapping/test_ical.py.)"""

from __future__ import annotations

from emulators.ews import mime


def test_mime_element_is_base64_with_a_character_set() -> None:
    elem = mime.mime_element("BEGIN:VCALENDAR é".encode())
    assert elem.get("CharacterSet") == "UTF-8"
    assert elem.text == "QkVHSU46VkNBTEVOREFSIMOp"
