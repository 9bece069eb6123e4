"""Exchange 2016's EWS schema, shipped with the stand-in (see README.md here for where it
comes from), and validation against it (`validation.py`)."""

from emulators.ews.schema.validation import (
    SCHEMA_DIR,
    EwsSchema,
    Violation,
    schema,
    syntax_violation,
)

__all__ = ["SCHEMA_DIR", "EwsSchema", "Violation", "schema", "syntax_violation"]
