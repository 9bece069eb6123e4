"""A local stand-in for Exchange Web Services that unmodified clients talk to: exchangelib,
DavMail (EWS mode), ews-javascript-api.

It keeps one mailbox per configured user (every well-known folder, calendar items, the
folders clients create), and answers GetFolder, FindFolder, SyncFolderHierarchy,
CreateFolder, DeleteFolder, ConvertId, GetUserConfiguration, CreateItem (items, and
Accept/Tentative/Decline/CancelCalendarItem), GetItem, UpdateItem, DeleteItem, MoveItem,
FindItem (CalendarView with recurring series expanded; restrictions and sort orders
evaluated) and SyncFolderItems, with extended properties stored and the MAPI properties
clients read computed; and notifications: Subscribe (pull, streaming), GetEvents,
GetStreamingEvents (a chunked response kept open), Unsubscribe, with Exchange's limits and
server affinity (`subscriptions.py`). What it does not emulate is listed in the README.
Reference: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/ews-operations-in-exchange

    from emulators.ews import start_server
    with start_server(users={"alice@example.com": "secret"}) as server:
        ...  # exchangelib Configuration(service_endpoint=server.url, ...)

Basic auth always; NTLM too with `ntlm=True` (`--ntlm`), pyspnego as the acceptor.
"""

from emulators.ews.server import EwsServer, start_server

__all__ = ["EwsServer", "start_server"]
