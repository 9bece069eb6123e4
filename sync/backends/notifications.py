"""EWS notifications (streaming, and pull where streaming is refused) on users' calendar
folders, through exchangelib. Layer 1: the source that uses them is
sync/sources/streaming.py.

Exchange's rules this follows (learn.microsoft.com, "Notification subscriptions, mailbox
events, and EWS in Exchange" and "Maintain affinity between a group of subscriptions and
the Mailbox server"):

- one GetStreamingEvents connection can carry up to 200 subscriptions; with impersonation,
  the subscriptions of several mailboxes share one, anchored on the first mailbox
  (X-AnchorMailbox, X-PreferServerAffinity: exchangelib sends both for these services, and
  keeps the X-BackEndOverrideCookie Exchange returns on its session);
- a connection lasts ConnectionTimeout minutes (1-30) and ends with ConnectionStatus
  Closed; the subscription outlives it (about 30 minutes without a connection), so the
  client reconnects with the same ids and loses nothing;
- open streaming connections per account are limited (3 on-premises by default, 10 in
  Exchange Online: ErrorExceededConnectionCount), and so are subscriptions
  (EWSMaxSubscriptions: ErrorExceededSubscriptionCount).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sync.backends.exchange import ExchangeMailbox

#: The item events that mean "the calendar changed" (a StatusEvent is a heartbeat).
CHANGE_EVENTS = ("CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "CopiedEvent")

Trouble = Literal[
    "subscription-gone",  # ErrorSubscriptionNotFound, expired, invalid: subscribe again
    "watermark",  # ErrorInvalidWatermark / missed events: subscribe again
    "busy",  # ErrorServerBusy: back off as told
    "connections",  # ErrorExceededConnectionCount
    "subscriptions",  # ErrorExceededSubscriptionCount
    "transport",  # the network, Exchange down, anything else
]


class NotificationError(Exception):
    """What went wrong, sorted by what the caller does about it; `code` is Exchange's
    ResponseCode (or the exception's name), `back_off` seconds when Exchange said."""

    def __init__(self, trouble: Trouble, code: str, *, back_off: float | None = None) -> None:
        super().__init__(f"{code} ({trouble})")
        self.trouble: Trouble = trouble
        self.code = code
        self.back_off = back_off


def _translate(exc: Exception) -> NotificationError:
    from exchangelib import errors

    code = type(exc).__name__
    if isinstance(exc, errors.ErrorServerBusy):
        return NotificationError("busy", code, back_off=exc.back_off)
    if isinstance(
        exc,
        errors.ErrorSubscriptionNotFound
        | errors.ErrorExpiredSubscription
        | errors.ErrorInvalidSubscription
        | errors.ErrorInvalidPullSubscriptionId,
    ):
        return NotificationError("subscription-gone", code)
    if isinstance(exc, errors.ErrorInvalidWatermark | errors.ErrorMissedNotificationEvents):
        return NotificationError("watermark", code)
    if isinstance(exc, errors.ErrorExceededConnectionCount):
        return NotificationError("connections", code)
    if isinstance(exc, errors.ErrorExceededSubscriptionCount):
        return NotificationError("subscriptions", code)
    return NotificationError("transport", code)


@dataclass(frozen=True, slots=True)
class Pulled:
    """What GetEvents answered: whether the calendar changed, the watermark to ask from
    next."""

    changed: bool
    watermark: str | None


def _changed(events: Any) -> bool:
    return any(type(e).__name__ in CHANGE_EVENTS for e in events or ())


class Stream:
    """One streaming connection for a group of subscriptions; `close()` from another
    thread ends `notifications()` at once (shutdown must not wait for the timeout)."""

    def __init__(self, anchor: ExchangeMailbox) -> None:
        from exchangelib.services import GetStreamingEvents

        self._service = GetStreamingEvents(account=anchor.account)
        self._lock = threading.Lock()
        self._closed = False

    def notifications(self, ids: list[str], timeout_min: int) -> Iterator[str]:
        """The subscription ids whose calendar changed, as Exchange reports them, until
        the connection's timeout (ConnectionStatus Closed) or `close()`."""
        try:
            for notification in self._service.call(
                subscription_ids=ids, connection_timeout=timeout_min
            ):
                if self._closed:
                    return
                if _changed(notification.events):
                    yield str(notification.subscription_id)
        except Exception as exc:
            if self._closed:
                return
            raise _translate(exc) from exc

    def close(self) -> None:
        """Mark the stream closed and release its connection without waiting: closing a
        response another thread is reading blocks until that read returns (urllib3-future
        holds the connection while it reads, up to the next heartbeat), so the release runs
        on a daemon thread of its own. The socket is shut first: the read in progress ends
        now (Exchange sees the client hang up and frees its place), not at the next
        heartbeat, 45 s away."""
        self._closed = True
        response = getattr(self._service, "_streaming_response", None)  # exchangelib's own
        sock = getattr(getattr(getattr(response, "raw", None), "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # gone already
                sock.shutdown(socket.SHUT_RDWR)
        threading.Thread(target=self._release, name="calsync-stream-close", daemon=True).start()

    def _release(self) -> None:
        # closing a connection that may be gone already
        with self._lock, contextlib.suppress(Exception):
            self._service.stop_streaming()


def subscribe_streaming(mailbox: ExchangeMailbox) -> str:
    """A streaming subscription on the mailbox's calendar."""
    try:
        return str(mailbox.account.calendar.subscribe_to_streaming())
    except Exception as exc:
        raise _translate(exc) from exc


def subscribe_pull(mailbox: ExchangeMailbox, timeout_min: int) -> tuple[str, str | None]:
    """A pull subscription on the mailbox's calendar: (id, watermark)."""
    try:
        subscription_id, watermark = mailbox.account.calendar.subscribe_to_pull(
            timeout=timeout_min
        )
    except Exception as exc:
        raise _translate(exc) from exc
    return str(subscription_id), watermark


def pull(mailbox: ExchangeMailbox, subscription_id: str, watermark: str | None) -> Pulled:
    """GetEvents until Exchange has no more (MoreEvents false)."""
    changed = False
    try:
        for notification in mailbox.account.calendar.get_events(subscription_id, watermark):
            events = list(notification.events or ())
            changed = changed or _changed(events)
            watermark = next(
                (e.watermark for e in reversed(events) if getattr(e, "watermark", None)),
                watermark,
            )
    except Exception as exc:
        raise _translate(exc) from exc
    return Pulled(changed, watermark)


def unsubscribe(mailbox: ExchangeMailbox, subscription_id: str) -> None:
    try:
        mailbox.account.calendar.unsubscribe(subscription_id)
    except Exception as exc:
        raise _translate(exc) from exc
