"""`python -m emit MODEL OUT.rknn ...` (see `emit.cli`)."""

import sys

from emit.cli import main

sys.exit(main())
