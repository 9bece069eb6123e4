"""calsync's state: interfaces and value types (base.py), the SQLite implementation
(sqlite.py). Every SQL statement of calsync lives in this package."""
