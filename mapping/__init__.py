"""Calendar field mapping between EWS CalendarItems and Google events (pure).

- `mapping.event`: `to_google` / `to_ews`, `patch_for`, `event_id_for`, `content_hash`,
  `MANAGED_FIELDS`, `LOSSY_FIELDS` (the core fields; attendees are not mapped here).
- `mapping.recurrence`: EWS recurrence <-> RRULE; `mapping.zones`: Windows <-> IANA zones;
  `mapping.body`: HTML bodies as readable text.

Raises only `MappingError` (mapping.errors) for values with no counterpart.
"""
