"""A local stand-in for Exchange Web Services that the unmodified exchangelib talks to.

It keeps one mailbox per configured user (calendar and deleted items), and answers the
calendar operations calsync uses: GetFolder, FindFolder, SyncFolderHierarchy, CreateItem
(items, and Accept/Tentative/Decline/CancelCalendarItem), GetItem, UpdateItem, DeleteItem,
MoveItem, FindItem (CalendarView with recurring series expanded), SyncFolderItems.
Reference: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/ews-operations-in-exchange

    from emulators.ews import start_server
    with start_server(users={"alice@example.com": "secret"}) as server:
        ...  # exchangelib Configuration(service_endpoint=server.url, ...)

Basic auth always; NTLM too with `ntlm=True` (`--ntlm`), pyspnego as the acceptor.

Not emulated: mail items, attachments, MIME content, extended properties, meeting
delivery between mailboxes, delegate access, Kerberos/Negotiate and OAuth, NTLM channel
binding (Extended Protection), streaming and push notifications.
"""

from emulators.ews.server import EwsServer, start_server

__all__ = ["EwsServer", "start_server"]
