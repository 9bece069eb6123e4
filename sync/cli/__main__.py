"""`python -m sync.cli ARGS` is `calsync ARGS` (the demo starts its processes so)."""

import sys

from sync.cli import main

sys.exit(main())
