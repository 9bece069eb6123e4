"""calsync's pure core: values in, values out (no SQLite, no network, no clock)."""
