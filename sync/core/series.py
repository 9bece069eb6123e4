"""Series exceptions, decided as pure functions: for one occurrence of a mapped series, what
each side changed since the two last agreed on it, and what to write where, with the
reconciler's merge (`sync.core.decide.merge`), the user's policy and the deletion rule.

An occurrence is named by its original start (mapping/exceptions.py): a Google instance
(an override, a cancelled instance, or one the master gives as it is) and an EWS
occurrence (an Occurrence, an Exception or a DeletedOccurrence). Neither has a pair in the
id map, so the last version both agreed on travels with the occurrence: the Google instance
carries, in one private extended property (`BASE_PROPERTY`), a short hash of each field as
each side showed it when they last agreed (`Agreed`). A side showing a field with another
hash changed it since. Before any agreement the series is the base: a field equal to what
the master gives at that start (`mapping.exceptions.occurrence_of`) was not changed.

Hashes per side, not one value: the two sides may spell an equal value differently (a zone
Exchange stores as its Windows zone's primary one), and a field neither changed must never
be written again because of its spelling.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from mapping.event import normalised
from sync.core.decide import Merge, Policy, merge
from sync.core.events import WRITTEN_FIELDS

#: The fields an occurrence of its own has on both sides: what calsync writes of an event,
#: less what belongs to the series (its rule, its UID) and the people (one way, Exchange to
#: Google, and carried with the master).
EXCEPTION_FIELDS: Final[tuple[str, ...]] = tuple(
    f for f in WRITTEN_FIELDS if f not in ("recurrence", "iCalUID", "attendees")
)
#: The instance's private extended property that holds the last agreed version.
BASE_PROPERTY: Final = "calsync_occurrence_base"
_VERSION: Final = "1"
#: Hex characters kept of each field's hash: 32 bits tell a change from none; the value
#: (2 x 9 fields) stays far below Google's 1024 characters for a property.
_HASH_CHARS: Final = 8


class _Both:
    """A base no side kept: both changed the field since they agreed."""

    def __repr__(self) -> str:
        return "<changed on both sides>"


_BOTH: Final = _Both()


def field_hash(name: str, value: Any) -> str:
    """The short hash of a field's value, as the mapping normalises it."""
    text = json.dumps(normalised(name, value), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(f"{name}={text}".encode()).hexdigest()[:_HASH_CHARS]


def hashes(view: Mapping[str, Any]) -> tuple[str, ...]:
    """One hash per `EXCEPTION_FIELDS`, of a side's occurrence in Google's shape."""
    return tuple(field_hash(name, view.get(name)) for name in EXCEPTION_FIELDS)


@dataclass(frozen=True, slots=True)
class Agreed:
    """The version of an occurrence both sides last agreed on, as each side showed it."""

    exchange: tuple[str, ...]
    google: tuple[str, ...]

    @classmethod
    def of(cls, exchange_view: Mapping[str, Any], google_view: Mapping[str, Any]) -> Agreed:
        return cls(hashes(exchange_view), hashes(google_view))

    def encode(self) -> str:
        return f"{_VERSION}:{''.join(self.exchange)}:{''.join(self.google)}"

    @classmethod
    def decode(cls, value: object) -> Agreed | None:
        """The value `encode` wrote; None for anything else (another version, a value
        someone changed, fields added since): the series is the base then."""
        if not isinstance(value, str):
            return None
        version, _, rest = value.partition(":")
        exchange, _, google = rest.partition(":")
        size = _HASH_CHARS * len(EXCEPTION_FIELDS)
        if version != _VERSION or len(exchange) != size or len(google) != size:
            return None

        def split(text: str) -> tuple[str, ...]:
            return tuple(text[i : i + _HASH_CHARS] for i in range(0, size, _HASH_CHARS))

        return cls(split(exchange), split(google))


def agreed_of(instance: Mapping[str, Any]) -> Agreed | None:
    """The agreed version a Google instance carries, if any."""
    properties = instance.get("extendedProperties")
    private = properties.get("private") if isinstance(properties, Mapping) else None
    return Agreed.decode(private.get(BASE_PROPERTY)) if isinstance(private, Mapping) else None


def with_agreed(body: Mapping[str, Any], agreed: Agreed) -> dict[str, Any]:
    """A patch body for the instance that also records `agreed` (private properties merge
    in a patch: the others stay)."""
    out = dict(body)
    properties = dict(out.get("extendedProperties") or {})
    private = dict(properties.get("private") or {})
    private[BASE_PROPERTY] = agreed.encode()
    properties["private"] = private
    out["extendedProperties"] = properties
    return out


def changed(
    view: Mapping[str, Any], *, agreed: tuple[str, ...] | None, plain: Mapping[str, Any]
) -> frozenset[str]:
    """The fields a side changed: against its hashes of the agreed version when there is
    one, else against `plain`, what the series gives at that start on that side."""
    if agreed is not None:
        return frozenset(
            name
            for name, known in zip(EXCEPTION_FIELDS, agreed, strict=True)
            if field_hash(name, view.get(name)) != known
        )
    return frozenset(
        name
        for name in EXCEPTION_FIELDS
        if normalised(name, view.get(name)) != normalised(name, plain.get(name))
    )


def merge_occurrence(
    exchange_view: Mapping[str, Any],
    google_view: Mapping[str, Any],
    *,
    exchange_changed: frozenset[str],
    google_changed: frozenset[str],
    policy: Policy,
    exchange_updated: dt.datetime | None = None,
    google_updated: dt.datetime | None = None,
) -> Merge:
    """The reconciler's merge for one occurrence both sides hold: a field one side changed
    goes to the other, one both changed is the policy's (a conflict unless they agree), one
    neither changed is left alone, however each side spells it."""
    base: dict[str, Any] = {}
    google = dict(google_view)
    for name in EXCEPTION_FIELDS:
        if name not in exchange_changed and name not in google_changed:
            base[name] = exchange_view.get(name)
            google[name] = exchange_view.get(name)  # agreed: one value, two spellings
        elif name not in exchange_changed:
            base[name] = exchange_view.get(name)
        elif name not in google_changed:
            base[name] = google_view.get(name)
        else:
            base[name] = _BOTH
    return merge(
        base,
        exchange_view,
        google,
        fields=EXCEPTION_FIELDS,
        policy=policy,
        exchange_updated=exchange_updated,
        google_updated=google_updated,
        same=_same,
    )


def _same(name: str, a: Any, b: Any) -> bool:
    if a is _BOTH or b is _BOTH:
        return a is b
    return bool(normalised(name, a) == normalised(name, b))
