"""Exchange through exchangelib, for one user: the `ExchangeBackend` of
sync/backends/base.py (full reads of calendar items, writes, the change feed).

- Never an invitation or cancellation: SendToNone on every create, update and delete.
- Updates are conditioned on the ChangeKey calsync last saw (NeverOverwrite): a stale one
  raises `ExchangeConflict`, and the caller reads and decides again.
- `changes()` is SyncFolderItems on the calendar, resumed from the stored SyncState.
  https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-synchronize-items-by-using-ews-in-exchange
- Exchange's errors keep their ResponseCode (`ExchangeError.code`); only the transport's
  failures (no answer, a timeout, HTTP 5xx, ErrorServerBusy) are retryable, and an
  exception that is not Exchange's (a TypeError of ours) propagates untranslated.
- Like the Google side, it never goes through a proxy: requests would honour
  HTTP(S)_PROXY and loop our own reads back through mitmproxy.

exchangelib is imported lazily (start-up time of mitmdump).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync.backends.base import (
    GOOGLE_EVENT_FIELD,
    READ_ONLY_ITEM_FIELDS,
    ExchangeBackend,
    ExchangeConflict,
    ExchangeError,
    ItemChange,
    google_event_of,
    register_google_event_field,
    set_differences,
)
from sync.config import Config, UserConfig
from sync.ops import metrics

if TYPE_CHECKING:
    from exchangelib.items import CalendarItem

log = logging.getLogger("calsync.exchange")

#: Event ids per FindItem of `created_for` (an Or of IsEqualTo restrictions).
FIND_CHUNK = 50

_adapter_lock = threading.Lock()
_ca_files: dict[str, str] = {}  # host:port -> CA file, for the one adapter class


def _install_adapter(ews_url: str, ca_file: Path | None) -> None:
    """exchangelib builds its own requests sessions; its documented hook for transport
    settings is `BaseProtocol.HTTP_ADAPTER_CLS`. Ours trusts the configured CA for the
    Exchange host and never uses a proxy."""
    import requests.adapters
    from exchangelib.protocol import BaseProtocol

    with _adapter_lock:
        if ca_file is not None:
            from urllib.parse import urlsplit

            _ca_files[urlsplit(ews_url).netloc] = str(ca_file)
        if getattr(BaseProtocol.HTTP_ADAPTER_CLS, "_calsync", False):
            return

        class NoProxyAdapter(requests.adapters.HTTPAdapter):
            _calsync = True

            def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                from urllib.parse import urlsplit

                kwargs["proxies"] = {}
                ca = _ca_files.get(urlsplit(request.url).netloc)
                if ca:
                    kwargs["verify"] = ca
                try:
                    response = super().send(request, **kwargs)
                except Exception:
                    metrics.ews_request(request.body, "unreachable")
                    raise
                metrics.ews_request(request.body, str(response.status_code))
                return response

        BaseProtocol.HTTP_ADAPTER_CLS = NoProxyAdapter


def exchange_error(exc: BaseException) -> ExchangeError | None:
    """What `exc`, raised by exchangelib or the transport below it, means; None for an
    exception that is neither (it is a bug to see, not Exchange's answer)."""
    import requests
    from exchangelib.errors import (
        CASError,
        ErrorIrresolvableConflict,
        ErrorServerBusy,
        EWSError,
        RateLimitError,
        RedirectError,
        ResponseMessageError,
        TransportError,
        UnauthorizedError,
    )

    code = type(exc).__name__
    message = str(exc)[:200]
    if isinstance(exc, ErrorIrresolvableConflict):
        return ExchangeConflict(message)
    if isinstance(exc, ErrorServerBusy):
        back_off = exc.back_off
        return ExchangeError(
            code, message, retryable=True, back_off=float(back_off) if back_off else None
        )
    if isinstance(exc, ResponseMessageError):  # an answer: its ResponseCode decides
        return ExchangeError(code, message)
    if isinstance(exc, UnauthorizedError | RedirectError):  # the account or the URL is wrong
        return ExchangeError(code, message, retryable=False)
    if isinstance(exc, RateLimitError):  # exchangelib's retry policy gave up waiting
        return ExchangeError(code, message, retryable=True, back_off=float(exc.wait))
    # exchangelib's own transport layer (HTTP status, connection, a CAS error page) and,
    # below it, requests' connection errors and timeouts: no answer from Exchange
    if isinstance(exc, TransportError | CASError):
        return ExchangeError(code, message, retryable=True)
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return ExchangeError(code, message, retryable=True)
    if isinstance(exc, ConnectionError | TimeoutError):
        return ExchangeError(code, message, retryable=True)
    if isinstance(exc, EWSError):  # an answer exchangelib could not read, a redirect, ...
        return ExchangeError(code, message, retryable=False)
    return None


@contextmanager
def _answers() -> Iterator[None]:
    """Exchange's and the transport's exceptions out as ExchangeError; any other passes."""
    try:
        yield
    except ExchangeError:
        raise
    except Exception as exc:
        error = exchange_error(exc)
        if error is None:
            raise
        raise error from None


class ExchangeMailbox:
    """One user's mailbox. Calls block: run them in a thread."""

    def __init__(self, config: Config, user: UserConfig) -> None:
        if not config.exchange_ews_url:
            raise ExchangeError("", "[exchange] ews_url is not configured")
        from exchangelib import (
            BASIC,
            DELEGATE,
            IMPERSONATION,
            NTLM,
            Account,
            Configuration,
            Credentials,
            Version,
        )
        from exchangelib.protocol import FailFast
        from exchangelib.version import EXCHANGE_2016

        _install_adapter(config.exchange_ews_url, config.exchange_ca_file)
        register_google_event_field()
        if config.exchange_impersonation_username:
            username = config.exchange_impersonation_username
            password = _secret(config.exchange_impersonation_password_env, "impersonation")
            access_type = IMPERSONATION
        else:
            username = user.exchange_username or user.mailbox
            password = _secret(user.exchange_password_env, user.mailbox)
            access_type = DELEGATE
        configuration = Configuration(
            service_endpoint=config.exchange_ews_url,
            credentials=Credentials(username, password),
            auth_type=NTLM if config.exchange_auth == "ntlm" else BASIC,
            version=Version(build=EXCHANGE_2016),
            # never sleep inside a call: ErrorServerBusy comes out at once with its
            # BackOffMilliseconds, and the job schedules the user's next run by it
            retry_policy=FailFast(),
            # a streaming connection (sync/sources/streaming.py) holds a session for
            # minutes: room beside it for the job's calls (exchangelib's default is one)
            max_connections=4,
        )
        self.user = user
        self.account = Account(
            primary_smtp_address=user.mailbox,
            config=configuration,
            autodiscover=False,
            access_type=access_type,
        )
        # exchangelib gives an ErrorServerBusy without BackOffMilliseconds (or with 0) its
        # own RETRY_WAIT (10 s) before raising it: 0 keeps "Exchange asked for nothing"
        # apart from a back-off Exchange asked for
        self.account.protocol.RETRY_WAIT = 0

    # --- reads ---------------------------------------------------------------------------

    def calendar_item(self, item_id: str) -> CalendarItem | None:
        """The full CalendarItem, or None when Exchange has no such item (or it is not a
        calendar item)."""
        from exchangelib.errors import ErrorItemNotFound

        return self._get_one((item_id, None), (ErrorItemNotFound,))

    def _get_one(self, asked: Any, gone: tuple[type[Exception], ...]) -> CalendarItem | None:
        """GetItem of one id: the calendar item; None when Exchange answers one of `gone`
        (raised, or returned inline as exchangelib does for an id's own error) or the item
        is no calendar item."""
        from exchangelib.items import CalendarItem

        with _answers():
            try:
                items = list(self.account.fetch(ids=[asked]))
            except gone:
                return None
        item = items[0] if items else None
        if isinstance(item, gone):
            return None
        if isinstance(item, Exception):
            error = exchange_error(item)
            raise error if error is not None else item
        return item if isinstance(item, CalendarItem) else None

    def missing(self, item_ids: Sequence[str]) -> set[str]:
        """The ids among `item_ids` Exchange has no item for: GetItem with the IdOnly
        shape, batched by exchangelib. Only ErrorItemNotFound counts as gone; any other
        answer for an id (ErrorAccessDenied, a malformed id, ...) means "unknown" and the
        id is not returned; a request that fails as a whole raises ExchangeError."""
        from exchangelib.errors import ErrorItemNotFound

        if not item_ids:
            return set()
        with _answers():
            try:
                asked = [(i, None) for i in item_ids]
                answers = list(self.account.fetch(ids=asked, only_fields=["id"]))
            except ErrorItemNotFound:
                # exchangelib may raise it rather than return it when one id was asked for
                return set(item_ids) if len(item_ids) == 1 else set()
        # exchangelib answers in the order asked
        return {
            item_id
            for item_id, answer in zip(item_ids, answers, strict=True)
            if isinstance(answer, ErrorItemNotFound)
        }

    def master_item_id(self, occurrence: CalendarItem) -> str | None:
        """The id of the series master of an occurrence or exception read from Exchange."""
        from exchangelib.errors import ErrorItemNotFound

        master = occurrence.recurring_master()
        with _answers():
            try:
                master.refresh()
            except ErrorItemNotFound:
                return None
        return str(master.id) if master.id else None

    def calendar_items(self, item_ids: list[str]) -> list[CalendarItem]:
        """Several items at once (GetItem), skipping any Exchange no longer has."""
        from exchangelib.items import CalendarItem

        if not item_ids:
            return []
        with _answers():
            fetched = list(self.account.fetch(ids=[(i, None) for i in item_ids]))
        return [i for i in fetched if isinstance(i, CalendarItem)]

    def calendar_folder_id(self) -> str:
        with _answers():
            return str(self.account.calendar.id)

    def all_items(self) -> list[CalendarItem]:
        """Every calendar item (masters, not occurrences), for a full comparison."""
        with _answers():
            return list(self.account.calendar.all())

    # --- writes --------------------------------------------------------------------------

    def create(
        self, values: Mapping[str, object], *, google_event_id: str | None = None
    ) -> tuple[str, str]:
        from exchangelib.items import SEND_TO_NONE, CalendarItem

        writable = {k: v for k, v in values.items() if k not in READ_ONLY_ITEM_FIELDS}
        if google_event_id is not None:
            writable[GOOGLE_EVENT_FIELD] = google_event_id
        # resolving the calendar is a GetFolder: its failures are Exchange's too
        with _answers():
            folder = self.account.calendar
        # a value exchangelib refuses (a TypeError, a ValueError) is ours: not translated
        item = CalendarItem(account=self.account, folder=folder, **writable)
        with _answers():
            item.save(send_meeting_invitations=SEND_TO_NONE)
        return str(item.id), str(item.changekey)

    def created_for(self, google_event_ids: Sequence[str]) -> dict[str, str]:
        """FindItem restricted on calsync's extended property (IsEqualTo, or an Or of them
        for several ids, FIND_CHUNK at a time), ids and the property only."""
        found: dict[str, str] = {}
        wanted = list(dict.fromkeys(google_event_ids))
        if not wanted:
            return found
        with _answers():
            folder = self.account.calendar
            for first in range(0, len(wanted), FIND_CHUNK):
                chunk = wanted[first : first + FIND_CHUNK]
                query = folder.filter(**{f"{GOOGLE_EVENT_FIELD}__in": chunk})
                for item in query.only("id", "changekey", GOOGLE_EVENT_FIELD):
                    event_id = google_event_of(item)
                    if event_id is not None and item.id:
                        found.setdefault(event_id, str(item.id))
        return found

    def update(self, item: CalendarItem, values: Mapping[str, object]) -> tuple[str, str] | None:
        """Set the fields of `values` that differ on `item` and save them, conditioned on
        the item's ChangeKey. None when nothing differed."""
        from exchangelib.items import NEVER_OVERWRITE, SEND_TO_NONE

        changed = set_differences(item, values)
        if not changed:
            return None
        with _answers():
            item.save(
                update_fields=changed,
                conflict_resolution=NEVER_OVERWRITE,
                send_meeting_invitations=SEND_TO_NONE,
            )
        return str(item.id), str(item.changekey)

    def delete(self, item_id: str, *, change_key: str | None = None) -> None:
        from exchangelib.errors import ErrorItemNotFound
        from exchangelib.items import SEND_TO_NONE

        item = self.calendar_item(item_id)
        if item is None:
            return
        if change_key is not None and item.changekey != change_key:
            raise ExchangeConflict()
        with _answers():
            try:
                item.delete(send_meeting_cancellations=SEND_TO_NONE)
            except ErrorItemNotFound:
                return

    # --- occurrences -------------------------------------------------------------------

    def occurrence(self, master_id: str, index: int) -> CalendarItem | None:
        from exchangelib.errors import (
            ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange,
            ErrorCalendarOccurrenceIsDeletedFromRecurrence,
            ErrorItemNotFound,
        )
        from exchangelib.properties import OccurrenceItemId

        return self._get_one(
            OccurrenceItemId(id=master_id, instance_index=index),
            (
                ErrorCalendarOccurrenceIsDeletedFromRecurrence,
                ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange,
                ErrorItemNotFound,
            ),
        )

    def delete_occurrence(self, occurrence: CalendarItem) -> None:
        from exchangelib.errors import ErrorItemNotFound
        from exchangelib.items import SEND_TO_NONE, SPECIFIED_OCCURRENCE_ONLY

        current = self.calendar_item(str(occurrence.id))  # its own ItemId
        if current is None:
            return
        if occurrence.changekey and current.changekey != occurrence.changekey:
            raise ExchangeConflict()
        with _answers():
            try:
                current.delete(
                    send_meeting_cancellations=SEND_TO_NONE,
                    affected_task_occurrences=SPECIFIED_OCCURRENCE_ONLY,
                )
            except ErrorItemNotFound:
                return

    def changes(
        self, sync_state: str | None, ignore: Iterable[str] = ()
    ) -> tuple[list[ItemChange], str | None]:
        """Everything that changed in the calendar since `sync_state` (all of it when
        None), and the state to resume from."""
        out: list[ItemChange] = []
        with _answers():
            # resolving the calendar is a GetFolder: its failures are Exchange's too
            folder = self.account.calendar
            # exchangelib resumes from the folder's cached item_sync_state when given None:
            # a full read must start from nothing, whatever an earlier call on it left
            folder.item_sync_state = sync_state
            for kind, value in folder.sync_items(
                sync_state=sync_state, ignore=[(i, None) for i in ignore] or None
            ):
                if kind in ("create", "update"):
                    out.append(ItemChange(kind, str(value.id), value.changekey, value))
                    if sync_state:  # an incremental feed: when it changed (/metrics)
                        metrics.feed_stamps("exchange", [value.last_modified_time])
                elif kind == "delete":
                    item_id = value if isinstance(value, str) else getattr(value, "id", value)
                    out.append(ItemChange("delete", str(item_id), None))
        state = folder.item_sync_state
        return out, str(state) if state is not None else None


def _secret(env: str | None, who: str) -> str:
    if not env:
        raise ExchangeError("", f"{who}: no exchange_password_env configured")
    value = os.environ.get(env)
    if not value:
        raise ExchangeError("", f"{who}: the environment variable {env} is not set")
    return value


_check: type[ExchangeBackend] = ExchangeMailbox  # mypy: ExchangeMailbox is an ExchangeBackend
