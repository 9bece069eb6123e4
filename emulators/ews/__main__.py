"""`python -m emulators.ews`: the same as `calsync emulate ews`."""

import sys

from emulators.ews.cli import main

sys.exit(main())
