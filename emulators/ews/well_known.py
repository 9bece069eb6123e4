"""The well-known folders of a mailbox: every DistinguishedFolderId name of Exchange 2016's
schema (types.xsd DistinguishedFolderIdNameType), with its display name, element
(Folder, CalendarFolder, ContactsFolder, TasksFolder, SearchFolder), FolderClass and
parent.

References:
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/distinguishedfolderid
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/folders-and-items-in-ews-in-exchange
(root holds the IPM subtree "Top of Information Store", where the mail, calendar, contacts
and tasks folders are, and non-IPM folders beside it: "Finder" with the search folders,
"Recoverable Items", ...). Names and FolderClass values of the long-standing folders are
those Exchange writes in an English mailbox (exchangelib's known_folders.py lists the
same). The schema also names folders only Exchange Online has (Yammer, OneDrive, team
spaces, tags, ...): they exist here too, under root, so that no client's lookup fails;
where a real 2016 server puts them, if anywhere, is not documented. The archive folders and
the public folders root need an archive mailbox or public folders, which no mailbox here
has: they answer ErrorFolderNotFound, as on a server without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class FolderSpec:
    """A folder: its DistinguishedFolderId name (a generated key for folders clients
    create), parent, display name, element name and FolderClass."""

    name: str
    parent: str | None
    display_name: str
    element: str
    folder_class: str | None
    distinguished: bool = True


def _spec(name: str, parent: str | None, display: str, element: str = "Folder",
          folder_class: str | None = "IPF.Note") -> FolderSpec:
    return FolderSpec(name, parent, display, element, folder_class)


#: In hierarchy order (a parent before its children).
FOLDERS: Final = (
    _spec("root", None, "", folder_class=None),
    _spec("msgfolderroot", "root", "Top of Information Store"),
    _spec("calendar", "msgfolderroot", "Calendar", "CalendarFolder", "IPF.Appointment"),
    _spec("deleteditems", "msgfolderroot", "Deleted Items"),
    # Mail folders hold nothing here, but clients resolve them: exchangelib looks up Sent
    # Items before sending a meeting response with SendAndSaveCopy; DavMail reads Inbox,
    # Calendar, Contacts, Sent Items, Drafts, Deleted Items, Junk Email and Outbox at login.
    _spec("inbox", "msgfolderroot", "Inbox"),
    _spec("sentitems", "msgfolderroot", "Sent Items"),
    _spec("contacts", "msgfolderroot", "Contacts", "ContactsFolder", "IPF.Contact"),
    _spec("recipientcache", "contacts", "Recipient Cache", "ContactsFolder",
          "IPF.Contact.RecipientCache"),
    _spec("quickcontacts", "contacts", "{06967759-274D-40B2-A3EB-D7F9E73727D7}",
          "ContactsFolder", "IPF.Contact.MOC.QuickContacts"),
    _spec("imcontactlist", "contacts", "{A9E2BC46-B3A0-4243-B315-60D991004455}",
          "ContactsFolder", "IPF.Contact.MOC.ImContactList"),
    _spec("peopleconnect", "contacts", "PeopleConnect", folder_class=None),
    _spec("mycontacts", "contacts", "MyContacts", "SearchFolder"),
    _spec("conversationhistory", "msgfolderroot", "Conversation History"),
    _spec("drafts", "msgfolderroot", "Drafts"),
    _spec("journal", "msgfolderroot", "Journal", folder_class="IPF.Journal"),
    _spec("junkemail", "msgfolderroot", "Junk Email"),
    _spec("notes", "msgfolderroot", "Notes", folder_class="IPF.StickyNote"),
    _spec("outbox", "msgfolderroot", "Outbox"),
    _spec("tasks", "msgfolderroot", "Tasks", "TasksFolder", "IPF.Task"),
    _spec("syncissues", "msgfolderroot", "Sync Issues"),
    _spec("conflicts", "syncissues", "Conflicts"),
    _spec("localfailures", "syncissues", "Local Failures"),
    _spec("serverfailures", "syncissues", "Server Failures"),
    _spec("scheduled", "msgfolderroot", "Scheduled"),
    _spec("externalcontacts", "msgfolderroot", "ExternalContacts", "ContactsFolder",
          "IPF.Contact"),
    # Outside the IPM subtree.
    _spec("searchfolders", "root", "Finder", folder_class=None),
    _spec("voicemail", "searchfolders", "Voice Mail", "SearchFolder",
          "IPF.Note.Microsoft.Voicemail"),
    _spec("todosearch", "searchfolders", "To-Do Search", "SearchFolder", "IPF.Task"),
    _spec("favorites", "searchfolders", "Favorites", "SearchFolder"),
    _spec("alltaggeditems", "searchfolders", "AllTaggedItems", "SearchFolder"),
    _spec("recoverableitemsroot", "root", "Recoverable Items", folder_class=None),
    _spec("recoverableitemsdeletions", "recoverableitemsroot", "Deletions", folder_class=None),
    _spec("recoverableitemsversions", "recoverableitemsroot", "Versions", folder_class=None),
    _spec("recoverableitemspurges", "recoverableitemsroot", "Purges", folder_class=None),
    _spec("recoverableitemsdiscoveryholds", "recoverableitemsroot", "DiscoveryHolds",
          folder_class=None),
    _spec("adminauditlogs", "recoverableitemsroot", "AdminAuditLogs", folder_class=None),
    _spec("directory", "root", "Directory", folder_class=None),
    _spec("mecontact", "root", "MeContact", "ContactsFolder", "IPF.Contact"),
    _spec("personmetadata", "root", "PersonMetadata", folder_class="IPF.Contact"),
    _spec("orionnotes", "root", "OrionNotes"),
    _spec("tagitems", "root", "TagItems"),
    _spec("teamchat", "root", "TeamChat"),
    _spec("teamspaceactivity", "root", "TeamspaceActivity"),
    _spec("teamspacemessaging", "root", "TeamspaceMessaging"),
    _spec("teamspaceworkitems", "root", "TeamspaceWorkItems"),
    _spec("yammerroot", "root", "Yammer Root"),
    _spec("yammerinbound", "yammerroot", "Inbound"),
    _spec("yammeroutbound", "yammerroot", "Outbound"),
    _spec("yammerfeeds", "yammerroot", "Feeds"),
    _spec("onedriveroot", "root", "OneDriveRoot", folder_class=None),
    _spec("onedriverecylebin", "onedriveroot", "OneDriveRecycleBin", folder_class=None),
    _spec("onedrivesystem", "onedriveroot", "OneDriveSystem", folder_class=None),
    _spec("onedrivevolume", "onedriveroot", "OneDriveVolume", folder_class=None),
)

#: Names of the schema that need an archive mailbox or public folders.
ABSENT: Final = frozenset({
    "publicfoldersroot", "archiveroot", "archivemsgfolderroot", "archivedeleteditems",
    "archiveinbox", "archiverecoverableitemsroot", "archiverecoverableitemsdeletions",
    "archiverecoverableitemsversions", "archiverecoverableitemspurges",
    "archiverecoverableitemsdiscoveryholds",
})


def element_for(folder_class: str | None) -> str:
    """The element a folder of this FolderClass is written as (and created from)."""
    if folder_class is None:
        return "Folder"
    base = folder_class.split(".")[:2]
    return {
        ("IPF", "Appointment"): "CalendarFolder",
        ("IPF", "Contact"): "ContactsFolder",
        ("IPF", "Task"): "TasksFolder",
    }.get((base[0], base[1]) if len(base) == 2 else ("", ""), "Folder")


def holds_calendar_items(spec: FolderSpec) -> bool:
    """Calendar folders, and Deleted Items, where deleted calendar items go."""
    return spec.name == "deleteditems" or element_for(spec.folder_class) == "CalendarFolder"
