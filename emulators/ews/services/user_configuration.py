"""GetUserConfiguration: the user configuration objects a mailbox holds. There is one
here, OWA.UserOptions in the root folder, whose "timezone" entry is the mailbox's time
zone (a Windows zone id): DavMail reads it at login to write its calendars' VTIMEZONE.

https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getuserconfiguration-operation
(the response names the configuration as the request did and carries ItemId, Dictionary,
XmlData and BinaryData as UserConfigurationProperties asks: Id, Dictionary, XmlData,
BinaryData or All). A name the folder does not hold is ErrorItemNotFound, the code Exchange
gives for a missing item; the configuration is an item of the folder's associated contents.
A real OWA.UserOptions holds many more OWA settings; only the time zone is kept here.
"""

from __future__ import annotations

import copy

from lxml import etree

from emulators.ews import ids
from emulators.ews.services.context import Context, error_message
from emulators.ews.wire import m, success, t
from ews_parser import EwsResponseError
from ews_parser.common import read_folder_target

#: (folder, name) of the configurations every mailbox has.
OWA_USER_OPTIONS = ("root", "OWA.UserOptions")


def handle(ctx: Context, request: object) -> list[etree._Element]:
    op = ctx.operation("GetUserConfiguration")
    name_elem = op.find(m("UserConfigurationName"))
    wanted = set((op.findtext(m("UserConfigurationProperties")) or "All").split())
    try:
        if name_elem is None:
            raise EwsResponseError("ErrorInvalidRequest", "The request is invalid.")
        targets = [read_folder_target(c) for c in name_elem if isinstance(c.tag, str)]
        target = next((x for x in targets if x is not None), None)
        if target is None:
            raise EwsResponseError("ErrorInvalidRequest", "The request is invalid.")
        folder = ctx.mailbox.folder(target)
        name = name_elem.get("Name") or ""
        if (folder.spec.name, name) != OWA_USER_OPTIONS:
            raise EwsResponseError("ErrorItemNotFound",
                                   "The specified object was not found in the store.")
    except EwsResponseError as exc:
        return [error_message("GetUserConfiguration", exc)]
    message = success("GetUserConfiguration")
    configuration = etree.SubElement(message, m("UserConfiguration"))
    echoed = copy.deepcopy(name_elem)
    echoed.tag = t("UserConfigurationName")
    configuration.append(echoed)
    if wanted & {"Id", "All"}:
        item_id, change_key = ids.stable_item_id(ctx.mailbox.address, "/".join(OWA_USER_OPTIONS))
        etree.SubElement(configuration, t("ItemId"), Id=item_id, ChangeKey=change_key)
    if wanted & {"Dictionary", "All"}:
        dictionary = etree.SubElement(configuration, t("Dictionary"))
        _entry(dictionary, "timezone", ctx.mailbox.time_zone)
    return [message]


def _entry(dictionary: etree._Element, key: str, value: str) -> None:
    entry = etree.SubElement(dictionary, t("DictionaryEntry"))
    for part, text in (("DictionaryKey", key), ("DictionaryValue", value)):
        elem = etree.SubElement(entry, t(part))
        etree.SubElement(elem, t("Type")).text = "String"
        etree.SubElement(elem, t("Value")).text = text
