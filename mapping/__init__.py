"""Calendar field mapping between EWS CalendarItems and Google events (pure).

- `mapping.event`: `to_google` / `to_ews`, `patch_for`, `event_id_for`, `content_hash`,
  `MANAGED_FIELDS`, `LOSSY_FIELDS` (every lossy field of every module, with its rule).
  The core fields only: no attendees, for callers that must not carry people.
- `mapping.full`: `to_google_full` (-> `Mapped(event, warnings)`) / `to_ews_full`,
  `FULL_MANAGED_FIELDS`: the core plus attendees, organizer, online meeting, and the zone
  of a legacy MeetingTimeZone with rules (pass `ParsedItem.legacy_time_zone`).
- `mapping.exceptions`: a series' exceptions. `overrides_for(master_id, master_event,
  modified_items, deleted_starts)` -> Google instance overrides and cancelled instances;
  `exceptions_from(master_event, instances)` -> (modified EWS kwargs with
  `original_start`, deleted original starts); `instance_id`, `occurrence_index` (EWS
  InstanceIndex), `occurrences`, `split_from` ("this and following").
- `mapping.people`: attendees / resources / organizer and response statuses.
- `mapping.online`: Teams / Meet / Zoom join URLs <-> `conferenceData`.
- `mapping.ical`: iCalendar (EWS MimeContent) <-> calendar item fields, as Exchange
  converts them: `read_calendar`, `write_calendar`, `merge` (elements sent beside the
  MimeContent win), `calendar_item` (the item a CreateItem with MimeContent makes).
- `mapping.recurrence`: EWS recurrence <-> RRULE; `mapping.zones`: Windows <-> IANA zones,
  `legacy_zone` for MeetingTimeZone rules; `mapping.body`: HTML bodies as readable text.

Nothing here sends anything; the writers must send every write with `sendUpdates=none`
(Google) and SendToNone (EWS SendMeetingInvitations / ...OrCancellations /
SendMeetingCancellations), see mapping.people.

Raises only `MappingError` (mapping.errors) for values with no counterpart.
"""
