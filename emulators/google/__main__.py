"""`python -m emulators.google --port N`: the same as `calsync emulate google`."""

from __future__ import annotations

import sys

from emulators.google.cli import main

if __name__ == "__main__":
    sys.exit(main())
